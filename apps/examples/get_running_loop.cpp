// get_running_loop(): the asyncio "Futures" documentation's example of
// loop.create_future(). A task finds the loop it runs on with
// get_running_loop(), creates a future on it, starts a second task that
// sets the future's result after a delay, and awaits it:
//
//     async def set_after(fut, delay, value):
//         await asyncio.sleep(delay)
//         fut.set_result(value)
//
//     async def main():
//         loop = asyncio.get_running_loop()
//         fut = loop.create_future()
//         loop.create_task(set_after(fut, 1, '... world'))
//         print('hello ...')
//         print(await fut)
//
//     asyncio.run(main())
//
// It also shows what the running loop reports about itself (time(),
// is_running()) and a second way to resolve a future: from a worker thread
// with run_in_executor.

#include <cstdio>
#include <shardloop.hpp>
#include <string>

using shardloop::await;

void set_after(shardloop::Future<std::string> fut, double delay, std::string value) {
    // Sleep for `delay` seconds.
    await(shardloop::sleep(delay));

    // Set `value` as the result of the future.
    fut.set_result(std::move(value));
}

void main_task() {
    // Get the current event loop.
    shardloop::EventLoop& loop = shardloop::get_running_loop();
    std::printf("running: %s, loop time: %.3f\n", loop.is_running() ? "yes" : "no", loop.time());

    // Create a new Future object.
    shardloop::Future<std::string> fut = loop.create_future<std::string>();

    // Run set_after() in a task of its own.
    loop.create_task([fut] { set_after(fut, 1.0, "... world"); });

    std::puts("hello ...");

    // Wait until the future has a result (1 second) and print it.
    std::puts(await(fut).c_str());

    // The same wait, with the result computed on the default thread pool.
    shardloop::Future<int> answer = loop.run_in_executor(nullptr, [] { return 6 * 7; });
    std::printf("from the executor: %d, loop time: %.3f\n", await(answer), loop.time());
}

int main() {
    // asyncio.run(main()): a new loop, main() run to completion, the loop closed.
    auto loop = shardloop::new_event_loop();
    loop->run_until_complete(main_task);
    loop->run_until_complete(loop->shutdown_default_executor());
    loop->close();
}
