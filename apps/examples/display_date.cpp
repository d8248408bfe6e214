// Display the current date with call_later(): the asyncio "Event Loop"
// documentation's example of the same name. A callback prints the date and
// reschedules itself a second later, until the end time, then stops the loop.
//
// Usage: display_date [SECONDS]   (default 5, as in the docs)

#include <sys/time.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <shardloop.hpp>

// Prints the local date and time the way Python's datetime.datetime.now()
// does: 2024-05-01 12:34:56.789012
void print_now() {
    timeval now{};
    gettimeofday(&now, nullptr);
    std::tm local{};
    localtime_r(&now.tv_sec, &local);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &local);
    std::printf("%s.%06ld\n", text, static_cast<long>(now.tv_usec));
    std::fflush(stdout);
}

void display_date(double end_time, shardloop::EventLoop& loop) {
    print_now();
    if (loop.time() + 1.0 < end_time) {
        loop.call_later(1.0, [end_time, &loop] { display_date(end_time, loop); });
    } else {
        loop.stop();
    }
}

int main(int argc, char** argv) {
    double seconds = argc > 1 ? std::strtod(argv[1], nullptr) : 5.0;

    auto loop = shardloop::new_event_loop();

    // Schedule the first call to display_date().
    double end_time = loop->time() + seconds;
    loop->call_soon(display_date, end_time, std::ref(*loop));

    // Blocking call interrupted by loop.stop().
    loop->run_forever();
    loop->close();
}
