// Hello World with call_soon(): the asyncio "Event Loop" documentation's
// first example, "Hello World with call_soon()". A callback prints
// "Hello World" and stops the loop, which is then closed.

#include <cstdio>
#include <functional>
#include <shardloop.hpp>

// A callback to print "Hello World" and stop the event loop.
void hello_world(shardloop::EventLoop& loop) {
    std::puts("Hello World");
    loop.stop();
}

int main() {
    auto loop = shardloop::new_event_loop();

    // Schedule a call to hello_world().
    loop->call_soon(hello_world, std::ref(*loop));

    // Blocking call interrupted by loop.stop(). asyncio wraps it in
    // try/finally to close the loop; an EventLoop also closes itself when
    // it is destroyed, so an exception leaving run_forever needs no more.
    loop->run_forever();
    loop->close();
}
