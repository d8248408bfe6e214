// libFuzzer target: arbitrary bytes through the request path (the parser,
// the routes, the responses), as a connection would feed them.
//
// The first three bytes choose how: two give the position at which the
// input is split into two reads, the third the limits (small ones reach
// the 431 and 413 paths) and whether to also feed it one byte at a time.
// Besides the sanitizers' checks, the target checks that the responses do
// not depend on how the input was split, that every response is
// well-formed at its start, and that normalize_path never returns a path
// that could leave the root. Built by run_fuzz.sh with clang, from the
// core's sources and llhttp's, without shardloop.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http_date.hpp"
#include "http_session.hpp"
#include "request_handler.hpp"
#include "static_files.hpp"

namespace {

using namespace shardloop::httpd;

void check(bool condition) {
    if (!condition) {
        __builtin_trap();
    }
}

// Feeds the pieces to a fresh session, answering as HttpConnection does
// (there is no root, so no file is ever sent); returns everything written.
template <class Pieces>
std::string transcript(const SessionLimits& limits, Pieces pieces) {
    static const DateCache date(784111777);
    static const RequestHandler handler;
    ServerCounters counters;
    HttpSession session(handler, date, counters, limits);
    std::string out;
    bool closed = false;
    pieces([&](std::string_view piece) {
        if (closed) {
            return;
        }
        Step step = session.feed(piece);
        for (;;) {
            const std::string& produced = session.output();
            check(produced.empty() || produced.starts_with("HTTP/1.1 "));
            out += produced;
            session.output_sent();
            if (step == Step::flush) {
                step = session.resume();
            } else if (step == Step::metrics) {
                session.metrics_done("metrics\n");
                step = session.resume();
            } else if (step == Step::close) {
                closed = true;
                break;
            } else {
                check(step == Step::need_more);  // send_file needs a root; busy, a pending action
                break;
            }
        }
    });
    if (closed) {
        out += "<closed>";
    }
    return out;
}

void check_normalized(std::string_view path) {
    std::string out;
    bool trailing = false;
    if (normalize_path(path, out, trailing) != PathStatus::ok) {
        return;
    }
    check(out.empty() || (out.front() != '/' && out.back() != '/'));
    std::string_view rest = out;
    while (!rest.empty()) {
        std::size_t slash = rest.find('/');
        std::string_view segment = rest.substr(0, slash);
        check(!segment.empty() && segment != "." && segment != "..");
        check(segment.find('\0') == std::string_view::npos);
        rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    if (size < 3) {
        return 0;
    }
    std::string_view input(reinterpret_cast<const char*>(data + 3), size - 3);
    std::size_t split = (static_cast<std::size_t>(data[0]) | data[1] << 8) % (input.size() + 1);
    uint8_t flags = data[2];
    SessionLimits limits;
    if ((flags & 1) != 0) {
        limits.parser.max_header_bytes = 16 + (flags >> 2);
        limits.parser.max_body_bytes = flags >> 4;
        limits.flush_bytes = 200;
    }

    std::string whole = transcript(limits, [&](auto feed) { feed(input); });
    std::string two = transcript(limits, [&](auto feed) {
        feed(input.substr(0, split));
        feed(input.substr(split));
    });
    check(whole == two);
    if ((flags & 2) != 0 && input.size() <= 4096) {
        std::string bytes = transcript(limits, [&](auto feed) {
            for (std::size_t i = 0; i < input.size(); ++i) {
                feed(input.substr(i, 1));
            }
        });
        check(whole == bytes);
    }

    check_normalized(input);
    check_normalized(request_path(input));
    return 0;
}
