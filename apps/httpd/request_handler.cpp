// The routes.

#include "request_handler.hpp"

#include "http_date.hpp"

namespace shardloop::httpd {

namespace {

bool starts_with_no_case(std::string_view text, std::string_view prefix) noexcept {
    if (text.size() < prefix.size()) {
        return false;
    }
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        char c = text[i];
        c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
        if (c != prefix[i]) {
            return false;
        }
    }
    return true;
}

constexpr std::string_view error_content_type = "text/plain; charset=utf-8";

}  // namespace

std::string_view request_path(std::string_view target) noexcept {
    if (target.empty()) {
        return {};
    }
    if (target.front() != '/') {
        // RFC 7230 section 5.3.2: a server must accept the absolute-form.
        std::size_t scheme = starts_with_no_case(target, "http://")    ? 7
                             : starts_with_no_case(target, "https://") ? 8
                                                                       : 0;
        if (scheme == 0) {
            return {};
        }
        std::size_t slash = target.find('/', scheme);
        if (slash == std::string_view::npos) {
            std::size_t query = target.find('?', scheme);
            return query == std::string_view::npos || query > scheme ? "/" : std::string_view{};
        }
        target.remove_prefix(slash);
    }
    std::size_t end = target.find_first_of("?#");
    return end == std::string_view::npos ? target : target.substr(0, end);
}

std::string_view error_body(int status) noexcept {
    switch (status) {
        case 400:
            return "Bad Request\n";
        case 403:
            return "Forbidden\n";
        case 404:
            return "Not Found\n";
        case 405:
            return "Method Not Allowed\n";
        case 413:
            return "Content Too Large\n";
        case 431:
            return "Request Header Fields Too Large\n";
        case 503:
            return "Service Unavailable\n";
        case 505:
            return "HTTP Version Not Supported\n";
        default:
            return "Error\n";
    }
}

RequestHandler::RequestHandler(StaticFiles files) noexcept
    : _files(files),
      _plaintext(200, "text/plain", plaintext_body),
      _json(200, "application/json", json_body) {}

Handled RequestHandler::handle(const RequestHead& head, Persistence persistence,
                               std::string_view date, std::string& out,
                               std::string& scratch) const {
    Handled handled;
    const bool head_only = head.method == HTTP_HEAD;
    auto fail = [&](int status) {
        handled.status = status;
        ResponseHead response;
        response.status = status;
        response.content_type = error_content_type;
        response.persistence = persistence;
        response.allow_get_head = status == 405;
        append_response(out, response, date, error_body(status), head_only);
        return std::move(handled);
    };
    if (head.method != HTTP_GET && !head_only) {
        return fail(405);
    }
    std::string_view path = request_path(head.target);
    if (path.empty()) {
        return fail(400);
    }
    if (path == "/plaintext") {
        _plaintext.append_to(out, date, persistence, head_only);
        return handled;
    }
    if (path == "/json") {
        _json.append_to(out, date, persistence, head_only);
        return handled;
    }
    if (path == "/metrics") {
        handled.kind = Handled::Kind::metrics;
        return handled;
    }
    StaticFile file = _files.open(path, scratch);
    if (file.status == 301) {
        handled.status = 301;
        scratch.assign(path);
        scratch.push_back('/');
        ResponseHead response;
        response.status = 301;
        response.content_type = error_content_type;
        response.persistence = persistence;
        response.location = scratch;
        append_response(out, response, date, "Moved Permanently\n", head_only);
        return handled;
    }
    if (file.status != 200) {
        return fail(file.status);
    }
    char modified[http_date_size];
    ResponseHead response;
    response.content_type = file.content_type;
    response.content_length = file.size;
    response.persistence = persistence;
    response.last_modified = format_http_date(file.mtime, modified);
    append_head(out, response, date);
    if (!head_only && file.size > 0) {
        handled.kind = Handled::Kind::send_file;
        handled.file = std::move(file.fd);
        handled.file_size = file.size;
    }
    return handled;
}

}  // namespace shardloop::httpd
