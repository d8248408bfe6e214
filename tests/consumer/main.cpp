// The smallest useful shardloop program, compiled against an installed or
// vendored shardloop by scripts/check-consumer.sh: it proves that the
// umbrella header, the exported target and its link dependencies are enough.

#include <cstdio>
#include <shardloop.hpp>

int main() {
    auto loop = shardloop::new_event_loop();
    loop->call_soon([&loop] {
        std::puts("hello from shardloop");
        loop->stop();
    });
    loop->run_forever();
    loop->close();
    return 0;
}
