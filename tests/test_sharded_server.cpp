// ShardedServer: one reuse_port server per shard on one port; the kernel
// spreads connections over the shards and each stays where it was
// accepted; stop() closes every shard's server and its clients; a port in
// use fails the start and leaves nothing behind.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "net/protocols.hpp"
#include "net/transports.hpp"
#include "policy/sharded_server.hpp"
#include "policy/topology.hpp"
#include "runtime/sleep.hpp"
#include "support/net_helpers.hpp"

namespace shardloop {
namespace {

// Answers every message with the id of the shard that serves the
// connection (and of the shard that accepted it: the same, always).
class WhoServes : public Protocol {
public:
    void connection_made(std::shared_ptr<BaseTransport> transport) override {
        _transport = transport_cast<Transport>(transport);
        _accepted_on = this_shard_id();
    }
    void data_received(std::string_view) override {
        unsigned now = this_shard_id();
        _transport->write(std::to_string(_accepted_on) + (now == _accepted_on ? "" : "moved"));
    }
    void connection_lost(std::exception_ptr) override { _transport.reset(); }

private:
    std::shared_ptr<Transport> _transport;
    unsigned _accepted_on = 0;
};

int connect_to(uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

std::string ask(int fd) {
    if (::send(fd, "?", 1, MSG_NOSIGNAL) != 1) {
        return "send failed";
    }
    char reply[16];
    ssize_t got = ::recv(fd, reply, sizeof reply, 0);
    return got > 0 ? std::string(reply, static_cast<std::size_t>(got)) : "recv failed";
}

TEST(ShardedServer, TwoShardsAcceptOnOnePortAndConnectionsStayPut) {
    auto policy = std::make_shared<ShardedPolicy>(ShardedPolicyOptions{.shards = 2});
    ShardedServer server;
    std::atomic<uint16_t> port{0};
    std::atomic<bool> clients_done{false};
    std::set<std::string> answers;
    std::atomic<std::size_t> active_at_peak{0};
    std::thread clients([&] {
        while (port.load() == 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        std::vector<int> fds;
        for (int n = 0; n < 64; ++n) {
            int fd = connect_to(port.load());
            ASSERT_GE(fd, 0);
            fds.push_back(fd);
        }
        for (int round = 0; round < 3; ++round) {
            for (int fd : fds) {
                answers.insert(ask(fd));
            }
        }
        clients_done = true;
        // Held open until the servers close them: stop() closes clients.
        for (int fd : fds) {
            char byte;
            EXPECT_EQ(::recv(fd, &byte, 1, 0), 0);  // orderly close from the server
            ::close(fd);
        }
    });
    policy->run([&] {
        if (this_shard_id() != 0) {
            return;
        }
        await(server.start([] { return std::make_shared<WhoServes>(); }, "127.0.0.1", 0));
        EXPECT_NE(server.port(), 0);
        port = server.port();
        while (!clients_done.load()) {
            await(sleep(0.005));
        }
        active_at_peak = await(server.active_count());
        await(server.stop());
        EXPECT_EQ(server.port(), 0);
        policy->stop();
    });
    clients.join();
    // Both shards accepted (64 connections all on one shard: odds 2^-63),
    // and no answer ever came from a shard other than the accepting one.
    EXPECT_EQ(answers, (std::set<std::string>{"0", "1"}));
    EXPECT_EQ(active_at_peak.load(), 64u);
}

TEST(ShardedServer, APortInUseFailsTheStartAndLeavesNothingListening) {
    // A listener without SO_REUSEPORT holds the port.
    int holder = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(holder, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    ASSERT_EQ(::listen(holder, 8), 0);
    socklen_t length = sizeof address;
    ASSERT_EQ(::getsockname(holder, reinterpret_cast<sockaddr*>(&address), &length), 0);
    uint16_t taken = ntohs(address.sin_port);

    auto policy = std::make_shared<ShardedPolicy>(ShardedPolicyOptions{.shards = 2});
    ShardedServer server;
    std::atomic<int> error{0};
    policy->run([&] {
        if (this_shard_id() != 1) {
            return;
        }
        try {
            await(server.start([] { return std::make_shared<WhoServes>(); }, "127.0.0.1", taken));
        } catch (const std::system_error& failure) {
            error = failure.code().value();
        }
        EXPECT_EQ(server.port(), 0);
        policy->stop();
    });
    ::close(holder);
    EXPECT_EQ(error.load(), EADDRINUSE);
}

// Connects `count` clients from a thread pinned to `cpu` (the way shards
// are pinned) and returns the shards that answered them.
std::multiset<std::string> shards_serving_clients_from(const Topology& topology, unsigned cpu,
                                                       uint16_t port, int count) {
    std::multiset<std::string> answers;
    std::thread client([&] {
        try {
            topology.pin_this_thread_to_cpu(cpu);
        } catch (const std::exception& e) {
            ADD_FAILURE() << "could not pin the client to CPU " << cpu << ": " << e.what();
            return;
        }
        for (int n = 0; n < count; ++n) {
            detail::UniqueFd fd(connect_to(port));
            if (!fd) {
                ADD_FAILURE() << "connect failed";
                return;
            }
            answers.insert(ask(fd.get()));
        }
    });
    client.join();
    return answers;
}

// With each spread, 32 clients connect from each shard's CPU in turn; the
// answers per CPU are collected on a thread that is not a shard.
std::vector<std::multiset<std::string>> answers_per_cpu(ConnectionSpread spread) {
    auto policy = std::make_shared<ShardedPolicy>(ShardedPolicyOptions{.shards = 2});
    std::vector<unsigned> cpus = policy->cpus();
    if (cpus[0] == cpus[1]) {
        return {};  // a single CPU: nothing to tell apart
    }
    Topology topology = Topology::discover();
    ShardedServer server(spread);
    std::atomic<uint16_t> port{0};
    std::atomic<bool> clients_done{false};
    std::vector<std::multiset<std::string>> answers;
    std::thread clients([&] {
        while (port.load() == 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        for (unsigned cpu : cpus) {
            answers.push_back(shards_serving_clients_from(topology, cpu, port.load(), 32));
        }
        clients_done = true;
    });
    policy->run([&] {
        if (this_shard_id() != 0) {
            return;
        }
        await(server.start([] { return std::make_shared<WhoServes>(); }, "127.0.0.1", 0));
        port = server.port();
        while (!clients_done.load()) {
            await(sleep(0.005));
        }
        await(server.stop());
        policy->stop();
    });
    clients.join();
    return answers;
}

TEST(ShardedServer, IncomingCpuSpreadAcceptsOnTheShardOfTheReceivingCpu) {
    // On loopback the connecting CPU processes the connection's packets, so
    // every client pinned to shard 0's CPU lands on shard 0, and likewise 1.
    std::vector<std::multiset<std::string>> answers =
        answers_per_cpu(ConnectionSpread::incoming_cpu);
    if (answers.empty()) {
        GTEST_SKIP() << "needs two CPUs";
    }
    ASSERT_EQ(answers.size(), 2u);
    EXPECT_EQ(answers[0].size(), 32u);
    EXPECT_EQ(answers[0].count("0"), 32u) << "clients on shard 0's CPU";
    EXPECT_EQ(answers[1].size(), 32u);
    EXPECT_EQ(answers[1].count("1"), 32u) << "clients on shard 1's CPU";
}

TEST(ShardedServer, HashSpreadIgnoresTheReceivingCpu) {
    // The contrast: by hash, clients from one CPU reach both shards (all 32
    // on one shard: odds 2^-31).
    std::vector<std::multiset<std::string>> answers = answers_per_cpu(ConnectionSpread::hash);
    if (answers.empty()) {
        GTEST_SKIP() << "needs two CPUs";
    }
    ASSERT_EQ(answers.size(), 2u);
    for (const std::multiset<std::string>& from_one_cpu : answers) {
        EXPECT_EQ(from_one_cpu.size(), 32u);
        EXPECT_GT(from_one_cpu.count("0"), 0u);
        EXPECT_GT(from_one_cpu.count("1"), 0u);
    }
}

TEST(ShardedServer, IncomingCpuSpreadNeedsPinnedShards) {
    auto policy = std::make_shared<ShardedPolicy>(ShardedPolicyOptions{.shards = 2, .pin = false});
    ShardedServer server(ConnectionSpread::incoming_cpu);
    std::string error;
    policy->run([&] {
        if (this_shard_id() != 0) {
            return;
        }
        try {
            await(server.start([] { return std::make_shared<WhoServes>(); }, "127.0.0.1", 0));
        } catch (const std::invalid_argument& failure) {
            error = failure.what();
        }
        EXPECT_EQ(server.port(), 0);
        policy->stop();
    });
    EXPECT_NE(error.find("incoming_cpu"), std::string::npos) << error;
    EXPECT_NE(error.find("pin"), std::string::npos) << error;
}

}  // namespace
}  // namespace shardloop
