// Watch a file descriptor for read events: the asyncio "Event Loop"
// documentation's example of add_reader(). A socket pair stands in for the
// network: a callback scheduled with call_soon writes "abc" to one end, and
// the reader callback on the other end receives it, unregisters itself and
// stops the loop.

#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <shardloop.hpp>

int main() {
    // Create a pair of connected file descriptors.
    int socks[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, socks) != 0) {
        std::perror("socketpair");
        return 1;
    }
    int rsock = socks[0];
    int wsock = socks[1];

    auto loop = shardloop::new_event_loop();

    auto reader = [&] {
        char data[100];
        ssize_t n = recv(rsock, data, sizeof data, 0);
        std::printf("Received: %.*s\n", static_cast<int>(n > 0 ? n : 0), data);

        // We are done: unregister the file descriptor.
        loop->remove_reader(rsock);

        // Stop the event loop.
        loop->stop();
    };

    // Register the file descriptor for read events.
    loop->add_reader(rsock, reader);

    // Simulate the reception of data from the network.
    loop->call_soon([wsock] { (void)!send(wsock, "abc", 3, 0); });

    // Run the event loop.
    loop->run_forever();

    // We are done. Close sockets and the event loop.
    close(rsock);
    close(wsock);
    loop->close();
}
