// IMF-fixdate formatting without the C library's locale-dependent strftime:
// the day and month names of RFC 7231 are fixed English abbreviations.

#include "http_date.hpp"

#include <ctime>

namespace shardloop::httpd {

namespace {

constexpr const char* day_names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr const char* month_names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

char* put_two_digits(char* out, int value) noexcept {
    out[0] = static_cast<char>('0' + value / 10 % 10);
    out[1] = static_cast<char>('0' + value % 10);
    return out + 2;
}

char* put_name(char* out, const char* name) noexcept {
    out[0] = name[0];
    out[1] = name[1];
    out[2] = name[2];
    return out + 3;
}

}  // namespace

std::string_view format_http_date(std::time_t when, char* out) noexcept {
    std::tm utc{};
    gmtime_r(&when, &utc);
    // Years outside 0..9999 cannot be written in four digits; an HTTP date
    // never needs them, so they are clamped rather than overflowing.
    int year = utc.tm_year + 1900;
    if (year < 0) {
        year = 0;
    } else if (year > 9999) {
        year = 9999;
    }
    char* p = out;
    p = put_name(p, day_names[utc.tm_wday % 7]);
    *p++ = ',';
    *p++ = ' ';
    p = put_two_digits(p, utc.tm_mday);
    *p++ = ' ';
    p = put_name(p, month_names[utc.tm_mon % 12]);
    *p++ = ' ';
    p = put_two_digits(p, year / 100);
    p = put_two_digits(p, year % 100);
    *p++ = ' ';
    p = put_two_digits(p, utc.tm_hour);
    *p++ = ':';
    p = put_two_digits(p, utc.tm_min);
    *p++ = ':';
    p = put_two_digits(p, utc.tm_sec);
    *p++ = ' ';
    *p++ = 'G';
    *p++ = 'M';
    *p++ = 'T';
    return {out, static_cast<std::size_t>(p - out)};
}

}  // namespace shardloop::httpd
