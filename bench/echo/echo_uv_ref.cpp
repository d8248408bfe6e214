// Reference echo server on libuv: one uv_loop_t on one thread. Reads land
// in one shared 64 KiB buffer (libuv asks for a buffer only when the socket
// is readable, and read_cb is done with it before the next one), and are
// echoed with uv_try_write; only what the kernel does not take at once is
// copied into a uv_write request. uv_try_write refuses while earlier writes
// are queued, so the bytes of a connection stay in order.
//
//   echo_uv_ref [--host 127.0.0.1] [--port 0] [--reuseport]
#include <uv.h>

#include <new>

#include "echo_common.hpp"

namespace {

constexpr const char* program_name = "echo_uv_ref";
constexpr size_t buffer_size = size_t{64} * 1024;
// A peer that sends but does not read would make the write queue grow
// without bound; above this many queued bytes the server stops reading.
constexpr size_t max_queued_bytes = 1 << 20;

char shared_read_buffer[buffer_size];

struct Connection {
    uv_tcp_t tcp;
    bool paused = false;  // reading stopped until the write queue drains
};

// A uv_write_t followed in the same allocation by the bytes the kernel did
// not take at once, so one free() in on_written releases both.
char* write_data(uv_write_t* req) { return reinterpret_cast<char*>(req + 1); }

void check(int status, const char* what) {
    if (status < 0) {
        echo_bench::die(program_name, what, -status);  // libuv errors are -errno on Unix
    }
}

Connection* connection_of(uv_stream_t* stream) { return static_cast<Connection*>(stream->data); }

void on_closed(uv_handle_t* handle) { delete static_cast<Connection*>(handle->data); }

void close_connection(uv_stream_t* stream) {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(stream))) {
        uv_close(reinterpret_cast<uv_handle_t*>(stream), on_closed);
    }
}

void on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) {
    *buf = uv_buf_init(shared_read_buffer, buffer_size);
}

void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);

void on_written(uv_write_t* req, int status) {
    uv_stream_t* stream = req->handle;
    std::free(req);
    if (status < 0) {
        close_connection(stream);  // includes UV_ECANCELED from our own close
        return;
    }
    Connection* c = connection_of(stream);
    if (c->paused && stream->write_queue_size == 0) {
        c->paused = false;
        check(uv_read_start(stream, on_alloc, on_read), "uv_read_start");
    }
}

void echo(uv_stream_t* stream, const char* data, size_t n) {
    uv_buf_t buf = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(n));
    int sent = uv_try_write(stream, &buf, 1);
    if (sent == UV_EAGAIN) {
        sent = 0;
    } else if (sent < 0) {
        close_connection(stream);
        return;
    }
    if (static_cast<size_t>(sent) == n) {
        return;
    }
    size_t rest = n - static_cast<size_t>(sent);
    auto* req = static_cast<uv_write_t*>(std::malloc(sizeof(uv_write_t) + rest));
    if (req == nullptr) {
        throw std::bad_alloc();
    }
    std::memcpy(write_data(req), data + sent, rest);
    uv_buf_t rest_buf = uv_buf_init(write_data(req), static_cast<unsigned>(rest));
    if (uv_write(req, stream, &rest_buf, 1, on_written) < 0) {
        std::free(req);
        close_connection(stream);
        return;
    }
    if (stream->write_queue_size > max_queued_bytes) {
        connection_of(stream)->paused = true;
        check(uv_read_stop(stream), "uv_read_stop");
    }
}

void on_shutdown(uv_shutdown_t* req, int) {
    close_connection(req->handle);
    delete req;
}

void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    if (nread > 0) {
        echo(stream, buf->base, static_cast<size_t>(nread));
    } else if (nread == UV_EOF) {
        // uv_shutdown waits for the queued writes, so the peer that
        // half-closed still gets all of its echo before the FIN.
        auto* req = new uv_shutdown_t;
        if (uv_shutdown(req, stream, on_shutdown) < 0) {
            delete req;
            close_connection(stream);
        }
    } else if (nread < 0) {
        close_connection(stream);
    }
}

void on_connection(uv_stream_t* server, int status) {
    if (status < 0) {
        std::fprintf(stderr, "%s: accept: %s\n", program_name, uv_strerror(status));
        return;
    }
    auto* c = new Connection;
    check(uv_tcp_init(server->loop, &c->tcp), "uv_tcp_init");
    c->tcp.data = c;
    auto* stream = reinterpret_cast<uv_stream_t*>(&c->tcp);
    if (int r = uv_accept(server, stream); r < 0) {
        std::fprintf(stderr, "%s: uv_accept: %s\n", program_name, uv_strerror(r));
        close_connection(stream);
        return;
    }
    check(uv_tcp_nodelay(&c->tcp, 1), "uv_tcp_nodelay");
    check(uv_read_start(stream, on_alloc, on_read), "uv_read_start");
}

// On SIGINT/SIGTERM every handle is closed; uv_run then returns because
// nothing is left active, and connections are freed in their close callback.
void on_signal(uv_signal_t* signal, int) {
    uv_walk(
        signal->loop,
        [](uv_handle_t* handle, void*) {
            if (!uv_is_closing(handle)) {
                uv_close(handle, handle->data != nullptr ? on_closed : nullptr);
            }
        },
        nullptr);
}

}  // namespace

int main(int argc, char** argv) {
    echo_bench::ServerOptions options = echo_bench::parse_server_options(program_name, argc, argv);
    echo_bench::raise_fd_limit(program_name);
    int listen_fd = echo_bench::make_listener(program_name, options);

    uv_loop_t loop;
    check(uv_loop_init(&loop), "uv_loop_init");
    uv_tcp_t server;
    check(uv_tcp_init(&loop, &server), "uv_tcp_init");
    server.data = nullptr;
    check(uv_tcp_open(&server, listen_fd), "uv_tcp_open");
    check(uv_listen(reinterpret_cast<uv_stream_t*>(&server), SOMAXCONN, on_connection),
          "uv_listen");

    uv_signal_t sigint;
    uv_signal_t sigterm;
    check(uv_signal_init(&loop, &sigint), "uv_signal_init");
    check(uv_signal_init(&loop, &sigterm), "uv_signal_init");
    sigint.data = nullptr;
    sigterm.data = nullptr;
    check(uv_signal_start(&sigint, on_signal, SIGINT), "uv_signal_start");
    check(uv_signal_start(&sigterm, on_signal, SIGTERM), "uv_signal_start");

    check(uv_run(&loop, UV_RUN_DEFAULT), "uv_run");
    check(uv_loop_close(&loop), "uv_loop_close");
    return 0;
}
