// Hello World with call_soon(): the asyncio "Event Loop" documentation's
// first example ("Hello World with call_soon()"), line for line.
//
// A callback prints "Hello World" and stops the loop; the loop is closed
// whatever happens.

#include <cstdio>

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

    // Blocking call interrupted by loop.stop(); the loop is closed either way
    // (its destructor would close it too; asyncio's try/finally, spelled out).
    try {
        loop->run_forever();
    } catch (...) {
        loop->close();
        throw;
    }
    loop->close();
}
