#include "apps/loadgen/worker.hpp"

#include <algorithm>
#include <utility>

#include "apps/loadgen/client.hpp"

namespace shardloop::loadgen {

namespace {

// Connection attempts a shard keeps in flight while it opens its
// connections: enough to hide the round trips, few enough not to overflow
// the server's listen backlog (a dropped SYN costs a second).
constexpr unsigned parallel_connects = 32;

// How long a failed reconnection waits before the next attempt, so that a
// server that is gone costs a few attempts per second, not a busy loop.
constexpr double retry_delay_s = 0.05;

double seconds(int64_t ns) { return static_cast<double>(ns) * 1e-9; }

}  // namespace

Worker::Worker(std::shared_ptr<const RunConfig> config)
    : _config(std::move(config)),
      _loop(get_running_loop()),
      _share(share_of(*_config, this_shard_id())),
      _done(_loop.create_future<void>()),
      _stopped(_loop.create_future<void>()) {
    for (unsigned i = 0; i < _config->pipeline; ++i) {
        _requests += _config->request;
    }
    _clients.reserve(_share.connections);
    for (unsigned i = 0; i < _share.connections; ++i) {
        _clients.push_back(std::make_shared<Client>(*this, i));
    }
    _quota_limited = _config->requests != 0;
    _quota = _share.requests;
}

Worker::~Worker() {
    // Whatever still refers to the clients (transports the loop closes
    // later, attempts, timers) finds them detached.
    _tick.cancel();
    _end_timer.cancel();
    _flush.cancel();
    for (const std::shared_ptr<Client>& client : _clients) {
        client->detach();
        client->retry.cancel();
        client->abort();
        if (client->connecting) {
            client->attempt.cancel();
        }
    }
}

// ---- Connections ----

Future<void> Worker::connect() {
    return _loop.create_task([this] {
        _connect_phase = true;
        std::size_t next = 0;
        for (;;) {
            while (_connecting < parallel_connects && next < _clients.size() && !_connect_error &&
                   !_finished) {
                connect_client(*_clients[next++]);
                ++_connecting;
            }
            if (_connecting == 0) {
                break;
            }
            _connect_progress = _loop.create_future<void>();
            await(_connect_progress);
        }
        _connect_phase = false;
        if (_connect_error) {
            std::rethrow_exception(_connect_error);
        }
        if (_finished) {
            throw CancelledError("the run was stopped while connecting");
        }
    });
}

void Worker::connect_client(Client& client) {
    std::shared_ptr<Client> self = client.shared_from_this();
    client.connecting = true;
    ++_open;
    client.attempt = _loop.create_connection([self] { return self; }, _config->host, _config->port);
    client.attempt.add_done_callback([self](const Future<Connection<Transport>>& attempt) {
        if (Worker* worker = self->worker()) {
            worker->connect_done(*self, attempt);
        }
    });
}

void Worker::connect_done(Client& client, const Future<Connection<Transport>>& attempt) {
    client.connecting = false;
    client.attempt = {};
    std::exception_ptr error;
    if (attempt.cancelled()) {
        error = std::make_exception_ptr(CancelledError());
    } else {
        error = attempt.exception();
    }
    if (_connect_phase) {
        --_connecting;
        if (error && !_connect_error && !attempt.cancelled()) {
            _connect_error = error;
        }
        if (_connect_progress.valid() && !_connect_progress.done()) {
            _connect_progress.set_result();
        }
    } else if (error && !_stopping && !_finished) {
        count_error(ErrorKind::connect);
        client.retry_pending = true;
        ++_open;
        std::shared_ptr<Client> self = client.shared_from_this();
        client.retry = _loop.call_later(retry_delay_s, [self] {
            if (Worker* worker = self->worker()) {
                worker->retry_connect(*self);
            }
        });
    }
    if (!error && _stopping) {
        client.abort();
    }
    closed_one();  // the attempt is over (a connection it made counts apart)
}

void Worker::retry_connect(Client& client) {
    client.retry_pending = false;
    client.retry = {};
    if (!_stopping && !_finished) {
        connect_client(client);
    }
    closed_one();
}

void Worker::client_lost(Client& client, std::exception_ptr error, bool expected) {
    if (!_stopping && !_finished) {
        if (!expected) {
            count_error(error ? ErrorKind::reset : ErrorKind::closed);
        }
        if (in_window(monotonic_ns())) {
            ++_result.reconnects;
        }
        connect_client(client);
    }
    closed_one();
}

void Worker::closed_one() noexcept {
    --_open;
    if (_stopping && _open == 0 && !_stopped.done()) {
        _stopped.set_result();
    }
}

void Worker::count_error(ErrorKind kind) noexcept {
    ++_progress.errors;
    if (in_window(monotonic_ns())) {
        ++_result.errors[static_cast<std::size_t>(kind)];
    }
}

// ---- The run ----

void Worker::start(Window window) {
    _window = window;
    _sending = !_finished;
    if (!_sending) {
        return;
    }
    if (_quota_limited && _quota == 0) {
        finish();  // this shard's share of the count is nothing
        return;
    }
    if (window.end_ns != Window{}.end_ns) {
        _end_timer = _loop.call_at(seconds(window.end_ns), [this] { finish(); });
    }
    if (_config->rate > 0) {
        _interval_ns = 1e9 / _share.rate;
        tick();
        return;
    }
    for (const std::shared_ptr<Client>& client : _clients) {
        list_for_send(*client);
    }
    flush();
}

// Open loop: the shard's requests k = 0, 1, 2... fall due at start_ns + k *
// interval, and request k goes to connection k mod n; so connection c's
// request j is the shard's request j * n + c. Each tick makes due what the
// clock has reached, lets every connection concerned send in one write,
// and sleeps until the next one is due.
void Worker::tick() {
    int64_t now = monotonic_ns();
    auto n = static_cast<uint64_t>(_clients.size());
    // Requests made due here go out at the end of the tick, with those
    // that responses made room for.
    while (_sending) {
        int64_t due =
            _window.start_ns + static_cast<int64_t>(static_cast<double>(_scheduled) * _interval_ns);
        if (due > now) {
            break;
        }
        if (_quota_limited && due >= _window.measure_ns) {
            if (_counted_issued == _quota) {
                break;  // the count is reached: nothing more falls due
            }
            ++_counted_issued;
        }
        Client& client = *_clients[_scheduled % n];
        client.make_due();
        list_for_send(client);
        ++_scheduled;
    }
    flush();
    arm_tick();
}

void Worker::want_send(Client& client) {
    list_for_send(client);
    if (!_flush_scheduled) {
        _flush_scheduled = true;
        _flush = _loop.call_soon([this] {
            _flush_scheduled = false;
            flush();
        });
    }
}

void Worker::list_for_send(Client& client) {
    if (!client.send_listed) {
        client.send_listed = true;
        _to_send.push_back(&client);
    }
}

void Worker::flush() {
    for (Client* client : _to_send) {
        client->send_listed = false;
        // Its own clock read: a closed-loop request is timed from its send,
        // and a flush of many connections takes a while.
        client->send(monotonic_ns());
    }
    _to_send.clear();
}

void Worker::arm_tick() {
    if (!_sending || (_quota_limited && _counted_issued == _quota)) {
        return;
    }
    int64_t due =
        _window.start_ns + static_cast<int64_t>(static_cast<double>(_scheduled) * _interval_ns);
    _tick = _loop.call_at(seconds(due), [this] { tick(); });
}

void Worker::finish() {
    if (_finished) {
        return;
    }
    _finished = true;
    _sending = false;
    _tick.cancel();
    _end_timer.cancel();
    for (const std::shared_ptr<Client>& client : _clients) {
        if (client->connecting && _connect_phase) {
            client->attempt.cancel();
        }
    }
    if (!_done.done()) {
        _done.set_result();
    }
}

ShardResult Worker::result() const {
    ShardResult result = _result;
    if (_config->mode == Mode::http) {
        for (std::size_t status = 0; status < _statuses.size(); ++status) {
            if (_statuses[status] != 0) {
                result.statuses[static_cast<unsigned>(status)] = _statuses[status];
            }
        }
    }
    return result;
}

Future<void> Worker::stop() {
    finish();
    if (!_stopping) {
        _stopping = true;
        for (const std::shared_ptr<Client>& client : _clients) {
            client->abort();
            if (client->connecting) {
                client->attempt.cancel();
            }
            if (client->retry_pending) {
                client->retry_pending = false;
                client->retry.cancel();
                closed_one();
            }
        }
        if (_open == 0 && !_stopped.done()) {
            _stopped.set_result();
        }
    }
    return _stopped;
}

}  // namespace shardloop::loadgen
