#include "runtime/errors.hpp"

namespace shardloop::detail {

void throw_errno(int negative_errno, const std::string& what) {
    throw std::system_error(-negative_errno, std::generic_category(), what);
}

}  // namespace shardloop::detail
