// EventLoop's registry of async generators and shutdown_asyncgens().

#include <algorithm>

#include "runtime/async_generator.hpp"
#include "runtime/log.hpp"

namespace shardloop {

void EventLoop::register_asyncgen(detail::AsyncGenBase* gen) {
    if (_asyncgens_shutdown_called) {
        log(LogLevel::warning, "asynchronous generator " + gen->repr() +
                                   " was scheduled after loop.shutdown_asyncgens() call");
    }
    _asyncgens.push_back(gen);
}

void EventLoop::unregister_asyncgen(detail::AsyncGenBase* gen) {
    auto it = std::find(_asyncgens.begin(), _asyncgens.end(), gen);
    if (it != _asyncgens.end()) {
        _asyncgens.erase(it);
    }
}

Future<void> EventLoop::shutdown_asyncgens() {
    check_closed();
    _asyncgens_shutdown_called = true;
    Future<void> done = create_future<void>();
    std::vector<detail::AsyncGenBase*> generators = std::move(_asyncgens);
    _asyncgens.clear();
    if (generators.empty()) {
        done.set_result();
        return done;
    }
    auto report = [this](const std::string& name, std::exception_ptr error) {
        ExceptionContext context;
        context.message = "an error occurred during closing of asynchronous generator " + name;
        context.exception = std::move(error);
        context.extra["asyncgen"] = name;
        call_exception_handler(context);
    };
    // Every generator starts closing now; a task collects the outcomes.
    std::vector<std::pair<std::string, Future<void>>> closing;
    for (detail::AsyncGenBase* generator : generators) {
        std::string name = generator->repr();
        try {
            closing.emplace_back(name, generator->aclose());
        } catch (...) {
            report(name, std::current_exception());
        }
    }
    create_task(
        [closing = std::move(closing), done, report]() mutable {
            for (auto& [name, closed] : closing) {
                try {
                    await(closed);
                } catch (const detail::FiberUnwind&) {
                    throw;
                } catch (...) {
                    report(name, std::current_exception());
                }
            }
            done.set_result();
        },
        "shutdown_asyncgens");
    return done;
}

}  // namespace shardloop
