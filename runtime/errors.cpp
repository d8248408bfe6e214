#include "runtime/errors.hpp"

namespace shardloop {

namespace {

std::string describe_group(const std::string& message,
                           const std::vector<std::exception_ptr>& exceptions) {
    std::string text = message + " (" + std::to_string(exceptions.size()) + " sub-exception" +
                       (exceptions.size() == 1 ? "" : "s") + ")";
    for (const std::exception_ptr& error : exceptions) {
        try {
            std::rethrow_exception(error);
        } catch (const std::exception& e) {
            text += "; ";
            text += e.what();
        } catch (...) {
            text += "; unknown exception";
        }
    }
    return text;
}

}  // namespace

ExceptionGroup::ExceptionGroup(const std::string& message,
                               std::vector<std::exception_ptr> exceptions)
    : std::runtime_error(describe_group(message, exceptions)), _exceptions(std::move(exceptions)) {}

namespace detail {

void throw_errno(int negative_errno, const std::string& what) {
    throw std::system_error(-negative_errno, std::generic_category(), what);
}

}  // namespace detail

}  // namespace shardloop
