// shardloop_loadgen end to end: the real binary against the real echo
// server (shardloop_echo), and against a small HTTP server in this test (a
// thread on blocking sockets answering with fixed responses), checking the
// JSON it prints, its exit status and its messages.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

using namespace std::chrono_literals;

// ---- Running a program ----

struct Outcome {
    int status = -1;  // the exit status, or 128 + the signal that killed it
    std::string out;
    std::string err;
};

// A child process with its stdout and stderr on pipes.
class Child {
public:
    explicit Child(std::vector<std::string> args) {
        int out[2];
        int err[2];
        EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
        EXPECT_EQ(::pipe2(err, O_CLOEXEC), 0);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
        std::vector<char*> argv;
        for (std::string& arg : args) {
            argv.push_back(arg.data());
        }
        argv.push_back(nullptr);
        int rc = posix_spawn(&_pid, argv[0], &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(out[1]);
        ::close(err[1]);
        _out = out[0];
        _err = err[0];
        EXPECT_EQ(rc, 0) << "posix_spawn " << args[0] << ": " << std::strerror(rc);
    }
    ~Child() {
        if (_pid > 0) {
            ::kill(_pid, SIGKILL);
            wait();
        }
        close_pipes();
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    pid_t pid() const { return _pid; }

    // Reads until `text` shows up in stdout (or stderr), or the time is up.
    bool read_until(const std::string& text, std::chrono::milliseconds limit, bool from_err) {
        auto deadline = std::chrono::steady_clock::now() + limit;
        const std::string& seen = from_err ? _outcome.err : _outcome.out;
        while (seen.find(text) == std::string::npos) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0 || !pump(static_cast<int>(left.count()))) {
                return seen.find(text) != std::string::npos;
            }
        }
        return true;
    }

    void signal(int sig) { ::kill(_pid, sig); }

    // Reads everything and waits for the exit; kills it after `limit`.
    Outcome finish(std::chrono::milliseconds limit) {
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (_out >= 0 || _err >= 0) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) {
                ADD_FAILURE() << "the program ran too long; killed it";
                ::kill(_pid, SIGKILL);
                close_pipes();
                break;
            }
            pump(static_cast<int>(left.count()));
        }
        wait();
        return _outcome;
    }

    const Outcome& outcome() const { return _outcome; }

private:
    // One poll of both pipes; false when both are closed or nothing came.
    bool pump(int timeout_ms) {
        pollfd fds[2] = {{_out, POLLIN, 0}, {_err, POLLIN, 0}};
        int n = ::poll(fds, 2, timeout_ms);
        if (n <= 0) {
            return false;
        }
        int* ends[2] = {&_out, &_err};
        std::string* sinks[2] = {&_outcome.out, &_outcome.err};
        for (int i = 0; i < 2; ++i) {
            if (fds[i].revents == 0 || *ends[i] < 0) {
                continue;
            }
            char buffer[4096];
            ssize_t got = ::read(*ends[i], buffer, sizeof buffer);
            if (got > 0) {
                sinks[i]->append(buffer, static_cast<std::size_t>(got));
            } else {
                ::close(*ends[i]);
                *ends[i] = -1;
            }
        }
        return _out >= 0 || _err >= 0;
    }

    void wait() {
        int status = 0;
        if (_pid > 0 && ::waitpid(_pid, &status, 0) == _pid) {
            _outcome.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        _pid = -1;
    }

    void close_pipes() {
        for (int* fd : {&_out, &_err}) {
            if (*fd >= 0) {
                ::close(*fd);
                *fd = -1;
            }
        }
    }

    pid_t _pid = -1;
    int _out = -1;
    int _err = -1;
    Outcome _outcome;
};

Outcome run_loadgen(std::vector<std::string> args, std::chrono::milliseconds limit = 60s) {
    args.insert(args.begin(), LOADGEN_BINARY);
    Child child(std::move(args));
    return child.finish(limit);
}

// ---- Reading the JSON report (flat keys are unique in it) ----

double json_number(const std::string& json, const std::string& key) {
    std::string pattern = "\"" + key + "\": ";
    std::size_t at = json.find(pattern);
    if (at == std::string::npos) {
        ADD_FAILURE() << "no " << key << " in " << json;
        return -1;
    }
    const char* start = json.c_str() + at + pattern.size();
    if (std::strncmp(start, "null", 4) == 0) {
        return -2;
    }
    return std::strtod(start, nullptr);
}

// The "status" object as a map.
std::map<unsigned, double> json_statuses(const std::string& json) {
    std::map<unsigned, double> statuses;
    std::size_t at = json.find("\"status\": {");
    EXPECT_NE(at, std::string::npos) << json;
    std::size_t end = json.find('}', at);
    std::string body = json.substr(at + 11, end - at - 11);
    std::size_t pos = 0;
    while ((pos = body.find('"', pos)) != std::string::npos) {
        unsigned status = static_cast<unsigned>(std::strtoul(body.c_str() + pos + 1, nullptr, 10));
        std::size_t colon = body.find(':', pos);
        statuses[status] = std::strtod(body.c_str() + colon + 1, nullptr);
        pos = body.find(',', colon);
        if (pos == std::string::npos) {
            break;
        }
    }
    return statuses;
}

void expect_sane_latencies(const std::string& json) {
    double p50 = json_number(json, "p50");
    double p90 = json_number(json, "p90");
    double p99 = json_number(json, "p99");
    double p999 = json_number(json, "p99_9");
    double max = json_number(json, "max");
    EXPECT_GT(p50, 0);
    EXPECT_LE(p50, p90);
    EXPECT_LE(p90, p99);
    EXPECT_LE(p99, p999);
    EXPECT_LE(p999, max);
}

// ---- The servers ----

// shardloop_echo on a free port, one shard.
class EchoServer {
public:
    EchoServer() : _child({ECHO_SERVER_BINARY, "--port", "0", "--shards", "1"}) {
        EXPECT_TRUE(_child.read_until("\n", 10s, false)) << "the echo server printed no port";
        std::string out = _child.outcome().out;
        std::size_t at = out.find("port=");
        EXPECT_NE(at, std::string::npos) << out;
        _port = std::atoi(out.c_str() + at + 5);
    }
    ~EchoServer() {
        _child.signal(SIGTERM);
        _child.finish(10s);
    }
    std::string port() const { return std::to_string(_port); }
    std::string pid() const { return std::to_string(_child.pid()); }

private:
    Child _child;
    int _port = 0;
};

// What the HTTP server does with its n-th request on a connection (from 0).
struct Answer {
    std::string bytes;
    enum class Then { keep, close, reset } then = Then::keep;
};
using Policy = std::function<Answer(unsigned connection, unsigned request)>;

const std::string hello =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

// An HTTP server on blocking sockets: a thread accepts, a thread per
// connection reads requests (anything up to an empty line) and writes the
// answers the policy gives, a batch of pipelined requests at a time.
class HttpServer {
public:
    explicit HttpServer(Policy policy) : _policy(std::move(policy)) {
        _listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        ::setsockopt(_listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::bind(_listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
        EXPECT_EQ(::listen(_listener, 128), 0);
        socklen_t length = sizeof address;
        ::getsockname(_listener, reinterpret_cast<sockaddr*>(&address), &length);
        _port = ntohs(address.sin_port);
        _acceptor = std::thread([this] { accept_loop(); });
    }
    ~HttpServer() {
        _stopping = true;
        ::shutdown(_listener, SHUT_RDWR);
        _acceptor.join();
        ::close(_listener);
        std::vector<std::thread> handlers;
        {
            std::lock_guard lock(_mutex);
            for (int fd : _open) {
                ::shutdown(fd, SHUT_RDWR);
            }
            handlers = std::move(_handlers);
        }
        for (std::thread& handler : handlers) {
            handler.join();
        }
    }
    std::string port() const { return std::to_string(_port); }
    unsigned connections() const { return _accepted.load(); }

private:
    void accept_loop() {
        for (;;) {
            int fd = ::accept4(_listener, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                if (_stopping || errno != EINTR) {
                    return;
                }
                continue;
            }
            unsigned id = _accepted++;
            std::lock_guard lock(_mutex);
            _open.push_back(fd);
            _handlers.emplace_back([this, fd, id] { serve(fd, id); });
        }
    }

    void serve(int fd, unsigned connection) {
        std::string pending;
        unsigned request = 0;
        bool open = true;
        while (open) {
            char buffer[16384];
            ssize_t got = ::recv(fd, buffer, sizeof buffer, 0);
            if (got <= 0) {
                break;
            }
            pending.append(buffer, static_cast<std::size_t>(got));
            std::string out;
            Answer::Then then = Answer::Then::keep;
            std::size_t end;
            while (then == Answer::Then::keep && (end = pending.find("\r\n\r\n")) != pending.npos) {
                pending.erase(0, end + 4);
                Answer answer = _policy(connection, request++);
                out += answer.bytes;
                then = answer.then;
            }
            if (!out.empty() && ::send(fd, out.data(), out.size(), MSG_NOSIGNAL) < 0) {
                break;
            }
            if (then == Answer::Then::reset) {
                linger hard{1, 0};  // close with a RST
                ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
                open = false;
            } else if (then == Answer::Then::close) {
                open = false;
            }
        }
        std::lock_guard lock(_mutex);
        std::erase(_open, fd);
        ::close(fd);
    }

    Policy _policy;
    int _listener = -1;
    uint16_t _port = 0;
    std::atomic<bool> _stopping{false};
    std::atomic<unsigned> _accepted{0};
    std::thread _acceptor;
    std::mutex _mutex;
    std::vector<int> _open;
    std::vector<std::thread> _handlers;
};

// A port with nothing listening on it (bound once, then released).
std::string free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
    socklen_t length = sizeof address;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    ::close(fd);
    return std::to_string(ntohs(address.sin_port));
}

// ---- Echo ----

TEST(LoadgenEcho, CountsExactlyTheRequestsAskedFor) {
    EchoServer server;
    Outcome run =
        run_loadgen({"--mode", "echo", "--port", server.port(), "--shards", "1", "--connections",
                     "8", "--requests", "2000", "--json", "--quiet", "--server-pid", server.pid()});
    ASSERT_EQ(run.status, 0) << run.err;
    EXPECT_EQ(json_number(run.out, "requests"), 2000);
    EXPECT_EQ(json_number(run.out, "errors"), 0);
    EXPECT_EQ(json_number(run.out, "bytes_received"), 2000 * 64);
    EXPECT_EQ(json_number(run.out, "bytes_sent"), 2000 * 64);
    EXPECT_GT(json_number(run.out, "requests_per_s"), 0);
    EXPECT_GT(json_number(run.out, "duration_s"), 0);
    EXPECT_GE(json_number(run.out, "server_cpu_s"), 0);
    EXPECT_GE(json_number(run.out, "client_cpu_s"), 0);
    expect_sane_latencies(run.out);
    // Exactly one JSON object: nothing before or after it.
    EXPECT_EQ(run.out.front(), '{');
    EXPECT_EQ(run.out.substr(run.out.size() - 2), "}\n");
}

TEST(LoadgenEcho, PipelinesOverTwoShardsForADuration) {
    EchoServer server;
    Outcome run = run_loadgen({"--mode", "echo", "--port", server.port(), "--shards", "2",
                               "--connections", "6", "--pipeline", "4", "--size", "100",
                               "--duration", "0.5", "--json", "--quiet"});
    ASSERT_EQ(run.status, 0) << run.err;
    EXPECT_EQ(json_number(run.out, "shards"), 2);
    EXPECT_GT(json_number(run.out, "requests"), 0);
    EXPECT_EQ(json_number(run.out, "errors"), 0);
    EXPECT_NEAR(json_number(run.out, "duration_s"), 0.5, 1e-6);
    expect_sane_latencies(run.out);
}

TEST(LoadgenEcho, OpenLoopKeepsTheRate) {
    EchoServer server;
    Outcome run =
        run_loadgen({"--mode", "echo", "--port", server.port(), "--shards", "1", "--connections",
                     "4", "--rate", "2000", "--duration", "1", "--json", "--quiet"});
    ASSERT_EQ(run.status, 0) << run.err;
    // 2,000 fall due in the window; the last few are still in flight when it closes.
    double requests = json_number(run.out, "requests");
    EXPECT_GT(requests, 1500);
    EXPECT_LE(requests, 2000);
    EXPECT_EQ(json_number(run.out, "rate"), 2000);
}

TEST(LoadgenEcho, ARequestCountStopsOnlyAfterTheWarmup) {
    EchoServer server;
    Outcome run =
        run_loadgen({"--mode", "echo", "--port", server.port(), "--shards", "1", "--connections",
                     "2", "--warmup", "0.2", "--requests", "500", "--json", "--quiet"});
    ASSERT_EQ(run.status, 0) << run.err;
    EXPECT_EQ(json_number(run.out, "requests"), 500);
}

// ---- HTTP ----

TEST(LoadgenHttp, CountsPipelinedResponsesByStatus) {
    std::atomic<unsigned> requests{0};
    HttpServer server([&](unsigned, unsigned) {
        unsigned n = requests++;
        if (n % 4 == 3) {
            return Answer{
                "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
                "4\r\nnope\r\n0\r\n\r\n"};
        }
        return Answer{hello};
    });
    Outcome run =
        run_loadgen({"--mode", "http", "--port", server.port(), "--shards", "1", "--connections",
                     "4", "--pipeline", "8", "--requests", "1000", "--json", "--quiet"});
    ASSERT_EQ(run.status, 0) << run.err;
    EXPECT_EQ(json_number(run.out, "requests"), 1000);
    EXPECT_EQ(json_number(run.out, "errors"), 0);
    std::map<unsigned, double> statuses = json_statuses(run.out);
    EXPECT_EQ(statuses[200] + statuses[404], 1000);
    EXPECT_GT(statuses[404], 200);
    expect_sane_latencies(run.out);
}

TEST(LoadgenHttp, ConnectionCloseIsCountedThenReconnected) {
    HttpServer server([](unsigned, unsigned request) {
        if (request == 9) {
            return Answer{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye",
                          Answer::Then::close};
        }
        return Answer{hello};
    });
    Outcome run =
        run_loadgen({"--mode", "http", "--port", server.port(), "--shards", "1", "--connections",
                     "2", "--pipeline", "2", "--requests", "200", "--json", "--quiet"});
    ASSERT_EQ(run.status, 0) << run.err;
    EXPECT_EQ(json_number(run.out, "errors"), 0);
    EXPECT_GT(json_number(run.out, "reconnects"), 5);
    EXPECT_GT(server.connections(), 10u);
    // Each closing connection answers 10 requests and loses the one behind them.
    double answered = json_number(run.out, "requests");
    EXPECT_EQ(answered + json_number(run.out, "lost_requests"), 200);
    EXPECT_EQ(json_statuses(run.out)[200], answered);
}

TEST(LoadgenHttp, ResetsMidRunAreCountedAndSurvived) {
    HttpServer server([](unsigned, unsigned request) {
        return Answer{hello, request == 20 ? Answer::Then::reset : Answer::Then::keep};
    });
    Outcome run = run_loadgen({"--mode", "http", "--port", server.port(), "--shards", "1",
                               "--connections", "3", "--duration", "0.5", "--json", "--quiet"});
    ASSERT_EQ(run.status, 0) << run.err;
    EXPECT_GT(json_number(run.out, "requests"), 100);
    EXPECT_GT(json_number(run.out, "errors"), 0);
    EXPECT_GT(json_number(run.out, "reconnects"), 0);
}

TEST(LoadgenHttp, TextReportNamesTheStatuses) {
    HttpServer server([](unsigned, unsigned) { return Answer{hello}; });
    Outcome run = run_loadgen({"--mode", "http", "--port", server.port(), "--shards", "1",
                               "--connections", "2", "--requests", "100", "--quiet"});
    ASSERT_EQ(run.status, 0) << run.err;
    EXPECT_NE(run.out.find("200: 100"), std::string::npos) << run.out;
    EXPECT_NE(run.out.find("p99.9"), std::string::npos) << run.out;
}

// ---- Stopping and failing ----

TEST(LoadgenRun, InterruptStopsEarlyAndStillReports) {
    HttpServer server([](unsigned, unsigned) { return Answer{hello}; });
    Child child({LOADGEN_BINARY, "--mode", "http", "--port", server.port(), "--shards", "1",
                 "--connections", "2", "--duration", "60", "--json"});
    // The progress line comes after a second; then interrupt.
    EXPECT_TRUE(child.read_until("req/s", 20s, true)) << child.outcome().err;
    child.signal(SIGINT);
    Outcome run = child.finish(20s);
    ASSERT_EQ(run.status, 0) << run.err;
    EXPECT_NE(run.out.find("\"interrupted\": true"), std::string::npos) << run.out;
    EXPECT_GT(json_number(run.out, "requests"), 0);
    double duration = json_number(run.out, "duration_s");
    EXPECT_GT(duration, 0.5);
    EXPECT_LT(duration, 30);
}

TEST(LoadgenRun, RefusedConnectionExitsWithOne) {
    Outcome run = run_loadgen(
        {"--mode", "echo", "--port", free_port(), "--connections", "2", "--shards", "1", "--json"});
    EXPECT_EQ(run.status, 1);
    EXPECT_NE(run.err.find("cannot connect"), std::string::npos) << run.err;
    EXPECT_EQ(run.out, "");
}

TEST(LoadgenRun, BadOptionExitsWithTwoNamingIt) {
    Outcome run = run_loadgen({"--port", "80", "--connections", "none"});
    EXPECT_EQ(run.status, 2);
    EXPECT_NE(run.err.find("--connections"), std::string::npos) << run.err;
    Outcome gone = run_loadgen({"--port", "80", "--server-pid", "999999999"});
    EXPECT_EQ(gone.status, 2);
    EXPECT_NE(gone.err.find("--server-pid"), std::string::npos) << gone.err;
}

TEST(LoadgenRun, HelpExplainsEveryOption) {
    Outcome run = run_loadgen({"--help"});
    EXPECT_EQ(run.status, 0);
    for (const char* option : {"--mode", "--host", "--port", "--connections", "--shards", "--cpus",
                               "--duration", "--requests", "--warmup", "--rate", "--pipeline",
                               "--size", "--path", "--json", "--quiet", "--server-pid"}) {
        EXPECT_NE(run.out.find(option), std::string::npos) << option;
    }
}

}  // namespace
