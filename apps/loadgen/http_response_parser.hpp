#pragma once

// HttpResponseParser: counts the HTTP/1.x responses in a byte stream, in
// one pass with llhttp and no copy. It asks llhttp for no header or body
// callbacks, only for the end of the headers (the status, whether the
// connection stays open) and the end of each message, so a response costs
// llhttp's scan of its bytes and one call of `on_response`. Bodies may be
// of any framing llhttp knows: Content-Length, chunked, or up to the end of
// the connection (completed by finish()).

#include <llhttp.h>

#include <string>
#include <string_view>

namespace shardloop::loadgen {

class HttpResponseParser {
public:
    // Called once per complete response, in order, with its status code.
    using OnResponse = void (*)(void* context, unsigned status);

    enum class Result {
        ok,      // every byte parsed; the connection may go on
        closed,  // a response ended the connection (Connection: close, or
                 // HTTP/1.0 without keep-alive): the bytes after it were
                 // ignored and the parser takes no more until reset()
        error,   // malformed input: error() says why; no more until reset()
    };

    HttpResponseParser(OnResponse on_response, void* context) noexcept;
    HttpResponseParser(const HttpResponseParser&) = delete;
    HttpResponseParser& operator=(const HttpResponseParser&) = delete;

    // Parses the next bytes of the stream; calls on_response for each
    // response they complete.
    Result feed(std::string_view data) noexcept;

    // The peer closed the connection: completes a response whose body ran
    // to the end of the connection. error when a response was cut short.
    Result finish() noexcept;

    // For a new connection.
    void reset() noexcept;

    // Whether part of a response has been seen but not its end.
    bool in_response() const noexcept { return _in_response; }

    // What was wrong, after an error.
    std::string error() const;

private:
    static int on_message_begin(llhttp_t* parser) noexcept;
    static int on_headers_complete(llhttp_t* parser) noexcept;
    static int on_message_complete(llhttp_t* parser) noexcept;

    llhttp_t _parser;
    OnResponse _on_response;
    void* _context;
    Result _state = Result::ok;
    bool _in_response = false;
    bool _keep_alive = true;  // of the response being parsed
};

}  // namespace shardloop::loadgen
