// AsyncGenerator<T> (runtime/async_generator.hpp): values, awaits and
// errors in the body, aclose() and GeneratorExit, the "already running"
// rules, EventLoop::shutdown_asyncgens(), and closing a generator whose
// last copy is dropped. Ported from CPython's test_asyncgen.py
// (AsyncGenAsyncioTest) and test_asyncio/test_base_events.py where noted.

#include <gtest/gtest.h>

#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "shardloop.hpp"
#include "support/loop_fixture.hpp"

namespace shardloop {
namespace {

using testing::Report;
using testing::what_of;

using Gen = AsyncGenerator<int>;
using Yield = Gen::Yield;

class AsyncGeneratorTest : public testing::LoopTest {
protected:
    // Every value of `gen`, pulled by a task (Python's `[i async for i in gen]`).
    std::vector<int> to_list(Gen gen) {
        auto task = loop->create_task([gen]() mutable {
            std::vector<int> values;
            while (std::optional<int> value = await(gen.anext())) {
                values.push_back(*value);
            }
            return values;
        });
        return loop->run_until_complete(task);
    }

    // Runs the loop for `seconds` (from the test body, where sleep() cannot be used).
    void run_for(double seconds) {
        loop->run_until_complete([seconds] { await(sleep(seconds)); });
    }

    // After a failure that left tasks behind: closes the loop now, so that
    // their stacks unwind while the test's locals they refer to still live.
    void close_if_tasks_remain() {
        if (loop->live_task_count() != 0) {
            ADD_FAILURE() << loop->live_task_count() << " task(s) left pending";
            loop->close();
        }
    }
};

// Records its destruction: a RAII object on a generator body's stack.
struct DestructionProbe {
    explicit DestructionProbe(bool& flag) : destroyed(flag) {}
    ~DestructionProbe() { destroyed = true; }
    bool& destroyed;
};

// ---- Values ----

// Ports test_asyncgen AsyncGenAsyncioTest.test_async_gen_asyncio_01.
TEST_F(AsyncGeneratorTest, ValuesComeInOrderAndTheEndIsNullopt) {
    Gen gen(*loop, [](Yield& yield) {
        yield(1);
        await(sleep(0.01));
        yield(2);
        await(sleep(0.01));
    });
    EXPECT_EQ(to_list(gen), (std::vector<int>{1, 2}));
}

// Ports test_asyncgen AsyncGenAsyncioTest.test_async_gen_asyncio_anext_04
// (run1): after the end, every anext() gives nullopt again.
TEST_F(AsyncGeneratorTest, AnextAfterTheEndKeepsGivingNullopt) {
    Gen gen(*loop, [](Yield& yield) {
        yield(1);
        await(sleep(0.01));
        yield(2);
    });
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::optional<int>(1));
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::optional<int>(2));
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::nullopt);
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::nullopt);
}

TEST_F(AsyncGeneratorTest, BodyStartsAtTheFirstAnextNotAtConstruction) {
    bool started = false;
    Gen gen(*loop, [&](Yield& yield) {
        started = true;
        yield(1);
    });
    run_briefly();
    EXPECT_FALSE(started);
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::optional<int>(1));
    EXPECT_TRUE(started);
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::nullopt);
}

// Ports test_asyncgen AsyncGenAsyncioTest.test_async_gen_asyncio_aclose_08
// (the body awaits a future between yields).
TEST_F(AsyncGeneratorTest, BodyAwaitsBetweenYieldsAndAnextWaitsForIt) {
    Future<int> between = loop->create_future<int>();
    Gen gen(*loop, [between](Yield& yield) {
        yield(1);
        yield(await(between));
    });
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::optional<int>(1));
    Future<std::optional<int>> second = gen.anext();
    run_briefly();
    run_briefly();
    EXPECT_FALSE(second.done()) << "the body is still waiting for its future";
    between.set_result(20);
    EXPECT_EQ(loop->run_until_complete(second), std::optional<int>(20));
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::nullopt);
}

// Ports test_asyncgen AsyncGenAsyncioTest.test_async_gen_asyncio_02.
TEST_F(AsyncGeneratorTest, ExceptionInTheBodySurfacesFromAnext) {
    Gen gen(*loop, [](Yield& yield) {
        yield(1);
        await(sleep(0.01));
        yield(2);
        throw std::domain_error("division by zero");
    });
    EXPECT_THROW(to_list(gen), std::domain_error);
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::nullopt) << "the generator is finished";
}

// ---- The "already running" rules ----

TEST_F(AsyncGeneratorTest, AnextWhileAnotherIsPendingThrowsRuntimeError) {
    Gen gen(*loop, [](Yield& yield) {
        await(sleep(0.01));
        yield(1);
    });
    Future<std::optional<int>> first = gen.anext();
    EXPECT_THROW(gen.anext(), RuntimeError);
    EXPECT_EQ(loop->run_until_complete(first), std::optional<int>(1));
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::nullopt);
}

TEST_F(AsyncGeneratorTest, AcloseWhileTheBodyRunsThrowsRuntimeError) {
    Gen gen(*loop, [](Yield& yield) {
        yield(1);
        await(sleep(0.01));
        yield(2);
    });
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::optional<int>(1));
    Future<std::optional<int>> second = gen.anext();
    EXPECT_THROW(gen.aclose(), RuntimeError);
    EXPECT_EQ(loop->run_until_complete(second), std::optional<int>(2));
    loop->run_until_complete(gen.aclose());
}

// ---- aclose ----

// Ports test_asyncgen AsyncGenAsyncioTest.test_async_gen_asyncio_aclose_07
// and test_async_gen_asyncio_aclose_10.
TEST_F(AsyncGeneratorTest, AcloseOfASuspendedGeneratorRunsTheBodysDestructors) {
    bool destroyed = false;
    bool saw_generator_exit = false;
    int done = 0;
    Gen gen(*loop, [&](Yield& yield) {
        DestructionProbe probe(destroyed);
        try {
            yield(1);
            done += 1000;
            yield(2);
        } catch (const GeneratorExit&) {
            saw_generator_exit = true;
            await(sleep(0.01));  // a body may await while it closes
            await(sleep(0.01));
            done += 1;
            throw;
        }
        done += 1000;
    });
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::optional<int>(1));
    EXPECT_FALSE(destroyed);
    Future<void> closed = gen.aclose();
    EXPECT_FALSE(closed.done());
    loop->run_until_complete(closed);
    EXPECT_TRUE(saw_generator_exit);
    EXPECT_TRUE(destroyed);
    EXPECT_EQ(done, 1);
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::nullopt);
}

TEST_F(AsyncGeneratorTest, AcloseTwiceWhileClosingGivesTheSameFuture) {
    Gen gen(*loop, [](Yield& yield) {
        try {
            yield(1);
        } catch (const GeneratorExit&) {
            await(sleep(0.01));
            throw;
        }
    });
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::optional<int>(1));
    Future<void> first = gen.aclose();
    Future<void> second = gen.aclose();
    EXPECT_TRUE(first == second);
    loop->run_until_complete(first);
}

// Ports test_asyncgen AsyncGenAsyncioTest.test_async_gen_aclose_twice_with_different_coros.
TEST_F(AsyncGeneratorTest, AcloseOfAnUnstartedGeneratorCompletesAtOnce) {
    bool started = false;
    Gen gen(*loop, [&](Yield& yield) {
        started = true;
        yield(1);
    });
    Future<void> closed = gen.aclose();
    EXPECT_TRUE(closed.done());
    EXPECT_NO_THROW(closed.result());
    Future<void> again = gen.aclose();
    EXPECT_TRUE(again.done());
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::nullopt);
    run_briefly();
    EXPECT_FALSE(started) << "a closed generator never starts";
}

// Ports test_asyncgen AsyncGenAsyncioTest.test_async_gen_aclose_after_exhaustion.
TEST_F(AsyncGeneratorTest, AcloseAfterExhaustionCompletesAtOnce) {
    Gen gen(*loop, [](Yield& yield) {
        yield(1);
        yield(2);
    });
    EXPECT_EQ(to_list(gen), (std::vector<int>{1, 2}));
    Future<void> closed = gen.aclose();
    EXPECT_TRUE(closed.done());
    EXPECT_NO_THROW(closed.result());
}

// Ports test_asyncgen AsyncGenAsyncioTest.test_async_gen_asyncio_aclose_11
// and test_async_gen_asyncio_aclose_06.
TEST_F(AsyncGeneratorTest, BodyThatYieldsAfterGeneratorExitFailsAclose) {
    int done = 0;
    Gen gen(*loop, [&](Yield& yield) {
        try {
            yield(1);
        } catch (const GeneratorExit&) {
            await(sleep(0.01));
        }
        yield(12);
        done += 1;
    });
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::optional<int>(1));
    try {
        loop->run_until_complete(gen.aclose());
        ADD_FAILURE() << "aclose() must fail when the body ignores GeneratorExit";
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("async generator ignored GeneratorExit"),
                  std::string::npos)
            << e.what();
    }
    EXPECT_EQ(done, 0);
}

// Ports test_asyncgen AsyncGenAsyncioTest.test_async_gen_asyncio_aclose_10: a
// body that swallows GeneratorExit and returns closes cleanly.
TEST_F(AsyncGeneratorTest, BodyThatSwallowsGeneratorExitAndReturnsClosesCleanly) {
    int done = 0;
    Gen gen(*loop, [&](Yield& yield) {
        try {
            yield(0);
        } catch (const GeneratorExit&) {
        }
        done = 1;
    });
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::optional<int>(0));
    loop->run_until_complete(gen.aclose());
    done += 10;
    EXPECT_EQ(done, 11);
}

TEST_F(AsyncGeneratorTest, GeneratorExitThrownOutsideAcloseFailsAnext) {
    Gen gen(*loop, [](Yield& yield) {
        yield(1);
        throw GeneratorExit{};
    });
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::optional<int>(1));
    EXPECT_THROW(loop->run_until_complete(gen.anext()), RuntimeError);
}

// Ports test_asyncgen AsyncGenAsyncioTest.test_async_gen_asyncio_aclose_12:
// the closing body awaits a task that fails and handles the failure.
TEST_F(AsyncGeneratorTest, ClosingBodyCanAwaitATaskAndHandleItsError) {
    int done = 0;
    Gen gen(*loop, [&](Yield& yield) {
        auto target = loop->create_task([]() -> int {
            await(sleep(0.01));
            throw std::domain_error("1 / 0");
        });
        try {
            yield(1);
        } catch (const GeneratorExit&) {
            try {
                await(target);
            } catch (const std::domain_error&) {
                done = 1;
            }
            throw;
        }
    });
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::optional<int>(1));
    loop->run_until_complete(gen.aclose());
    EXPECT_EQ(done, 1);
}

// ---- shutdown_asyncgens ----

// Ports test_asyncgen AsyncGenAsyncioTest.test_async_gen_asyncio_shutdown_01
// for generators waiting at a yield (the test_base_events shutdown_asyncgens
// path): each one's body is closed, its destructors run, and the future
// completes once all have finished.
TEST_F(AsyncGeneratorTest, ShutdownAsyncgensFinalisesEverySuspendedGenerator) {
    record_reports();
    int finalized = 0;
    bool destroyed1 = false;
    bool destroyed2 = false;
    bool destroyed_unstarted = false;
    auto make = [&](bool& destroyed) {
        return Gen(*loop, [&finalized, &destroyed](Yield& yield) {
            DestructionProbe probe(destroyed);
            try {
                while (true) {
                    yield(1);
                }
            } catch (const GeneratorExit&) {
                yield_now();
                finalized += 1;
                throw;
            }
        });
    };
    Gen g1 = make(destroyed1);
    Gen g2 = make(destroyed2);
    Gen unstarted = make(destroyed_unstarted);
    EXPECT_EQ(loop->run_until_complete(g1.anext()), std::optional<int>(1));
    EXPECT_EQ(loop->run_until_complete(g2.anext()), std::optional<int>(1));

    Future<void> shutdown = loop->shutdown_asyncgens();
    loop->run_until_complete(shutdown);
    EXPECT_TRUE(shutdown.done());
    EXPECT_EQ(finalized, 2);
    EXPECT_TRUE(destroyed1);
    EXPECT_TRUE(destroyed2);
    EXPECT_FALSE(destroyed_unstarted) << "a generator never started has no body to close";
    EXPECT_TRUE(reports.empty());
    EXPECT_EQ(loop->run_until_complete(g1.anext()), std::nullopt);
}

TEST_F(AsyncGeneratorTest, ShutdownAsyncgensWithNoGeneratorCompletesAtOnce) {
    Future<void> shutdown = loop->shutdown_asyncgens();
    EXPECT_TRUE(shutdown.done());
    EXPECT_NO_THROW(shutdown.result());
}

// Ports test_asyncgen AsyncGenAsyncioTest.test_async_gen_asyncio_shutdown_exception_01.
TEST_F(AsyncGeneratorTest, ErrorWhileClosingAtShutdownGoesToTheExceptionHandler) {
    record_reports();
    Gen gen(*loop, [](Yield& yield) {
        try {
            yield(1);
            yield(2);
        } catch (const GeneratorExit&) {
            throw std::domain_error("1/0");
        }
    });
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::optional<int>(1));
    loop->run_until_complete(loop->shutdown_asyncgens());
    ASSERT_EQ(reports.size(), 1U);
    const std::string prefix = "an error occurred during closing of asynchronous generator";
    EXPECT_EQ(reports[0].message.rfind(prefix, 0), 0U) << reports[0].message;
    EXPECT_EQ(what_of(reports[0].exception), "1/0");
    EXPECT_FALSE(reports[0].asyncgen.empty()) << "the context names the generator";
}

// Ports test_asyncgen AsyncGenAsyncioTest.test_async_gen_asyncio_shutdown_02:
// a generator that was left at a yield and closes cleanly reports nothing.
TEST_F(AsyncGeneratorTest, CleanShutdownReportsNothing) {
    record_reports();
    Gen gen(*loop, [](Yield& yield) {
        yield(1);
        yield(2);
    });
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::optional<int>(1));
    loop->run_until_complete(loop->shutdown_asyncgens());
    EXPECT_TRUE(reports.empty());
}

// asyncio's _asyncgen_firstiter_hook warns about a generator first iterated
// after shutdown_asyncgens().
TEST_F(AsyncGeneratorTest, GeneratorStartedAfterShutdownIsWarnedAbout) {
    loop->run_until_complete(loop->shutdown_asyncgens());
    Gen gen(*loop, [](Yield& yield) { yield(1); });
    EXPECT_EQ(loop->run_until_complete(gen.anext()), std::optional<int>(1));
    EXPECT_TRUE(log_capture.contains(LogLevel::warning,
                                     "was scheduled after loop.shutdown_asyncgens() call"));
    loop->run_until_complete(gen.aclose());
}

// Ports test_asyncgen AsyncGenAsyncioTest.test_async_gen_asyncio_shutdown_01
// as written: the consumers are cancelled while the generator bodies are
// still awaiting (before their first yield). In asyncio the body runs in
// the consumer's task, so the cancellation reaches the body, which
// finalizes; shutdown_asyncgens() then has nothing left to close.
TEST_F(AsyncGeneratorTest, CancellingTheConsumerFinalizesTheGeneratorBodyItAwaits) {
    record_reports();
    int finalized = 0;
    std::vector<std::string> body_saw;  // what ended each body, for the failure message
    auto consumer = [this, &finalized, &body_saw] {
        Gen gen(*loop, [&finalized, &body_saw](Yield& yield) {
            try {
                await(sleep(1.0));
                yield(1);
            } catch (const CancelledError&) {
                body_saw.push_back("CancelledError");
                finalized += 1;
                throw;
            } catch (const std::exception& e) {
                body_saw.push_back(e.what());
                finalized += 1;
                throw;
            } catch (...) {
                finalized += 1;
                throw;
            }
        });
        while (await(gen.anext())) {
        }
    };
    auto t1 = loop->create_task(consumer);
    auto t2 = loop->create_task(consumer);
    run_for(0.1);
    t1.cancel();
    t2.cancel();
    EXPECT_THROW(loop->run_until_complete(t1), CancelledError);
    EXPECT_THROW(loop->run_until_complete(t2), CancelledError);
    loop->run_until_complete(loop->shutdown_asyncgens());
    EXPECT_EQ(finalized, 2) << "the cancelled consumers' generator bodies were not finalized";
    EXPECT_TRUE(reports.empty()) << reports.size() << " report(s), first: "
                                 << (reports.empty() ? "" : reports[0].message);
    // Cleanup after a failure: let the bodies run out on their own.
    run_until([&] { return finalized == 2 && loop->live_task_count() == 0; }, 10.0);
    for (const std::string& seen : body_saw) {
        EXPECT_EQ(seen, "CancelledError")
            << "what a body saw once it ran on after its consumer went";
    }
    close_if_tasks_remain();
}

// ---- Dropping the last copy ----

// Ports test_asyncgen AsyncGenAsyncioTest.test_async_gen_asyncio_gc_aclose_09
// and test_base_events test_asyncgen_finalization_by_gc.
TEST_F(AsyncGeneratorTest, DroppingTheLastCopyOfASuspendedGeneratorClosesIt) {
    bool destroyed = false;
    int done = 0;
    {
        Gen gen(*loop, [&](Yield& yield) {
            DestructionProbe probe(destroyed);
            try {
                while (true) {
                    yield(1);
                }
            } catch (const GeneratorExit&) {
                yield_now();
                done = 1;
                throw;
            }
        });
        Gen copy = gen;
        EXPECT_EQ(loop->run_until_complete(gen.anext()), std::optional<int>(1));
        EXPECT_EQ(loop->run_until_complete(copy.anext()), std::optional<int>(1));
        gen = Gen(*loop, [](Yield&) {});
        run_briefly();
        EXPECT_FALSE(destroyed) << "a copy is still alive";
    }
    run_until([&] { return destroyed && loop->live_task_count() == 0; });
    EXPECT_EQ(done, 1);
}

// Python finalizes a generator once nothing refers to it, which for a
// generator whose body is running happens when it next suspends. Here the
// last copy goes while the body runs towards its next yield; the body must
// still be closed once it gets there.
TEST_F(AsyncGeneratorTest, DroppingTheLastCopyWhileTheBodyRunsClosesItAtItsNextYield) {
    bool destroyed = false;
    Future<void> gate = loop->create_future<void>();
    Future<std::optional<int>> second;
    {
        Gen gen(*loop, [&destroyed, gate](Yield& yield) {
            DestructionProbe probe(destroyed);
            yield(1);
            await(gate);
            yield(2);
            yield(3);
        });
        EXPECT_EQ(loop->run_until_complete(gen.anext()), std::optional<int>(1));
        second = gen.anext();
        run_briefly();
    }
    gate.set_result();
    EXPECT_EQ(loop->run_until_complete(second), std::optional<int>(2));
    run_until([&] { return destroyed; }, 2.0);
    EXPECT_TRUE(destroyed) << "the unreferenced generator stays suspended at yield(2) for ever";
    close_if_tasks_remain();
}

// ---- Loop close ----

// A generator body still running when the loop closes is unwound with its
// task; only the pending tasks are reported, nothing else.
TEST_F(AsyncGeneratorTest, ClosingTheLoopWhileTheBodyAwaitsReportsOnlyThePendingTasks) {
    record_reports();
    Future<void> never = loop->create_future<void>();
    bool destroyed = false;
    auto consumer = loop->create_task([this, never, &destroyed] {
        Gen gen(*loop, [never, &destroyed](Yield& yield) {
            DestructionProbe probe(destroyed);
            await(never);
            yield(1);
        });
        await(gen.anext());
    });
    run_briefly();
    run_briefly();
    loop->close();
    EXPECT_TRUE(destroyed);
    std::vector<std::string> messages;
    for (const Report& report : reports) {
        messages.push_back(report.message + " / " + what_of(report.exception));
    }
    EXPECT_EQ(messages, (std::vector<std::string>{"Task was destroyed but it is pending! / ",
                                                  "Task was destroyed but it is pending! / "}));
}

}  // namespace
}  // namespace shardloop
