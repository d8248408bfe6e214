#pragma once

// A move-only callable with inline storage, used for every callback the loop
// keeps (ready queue, timers, done callbacks, executor jobs). Unlike
// std::function it accepts move-only lambdas and keeps a typical capture
// (a few pointers and a shared handle) without a heap allocation.

#include <cstddef>
#include <new>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace shardloop::detail {

template <class Signature>
class Callback;

template <class R, class... Args>
class Callback<R(Args...)> {
public:
    static constexpr std::size_t inline_size = 48;

    Callback() noexcept = default;
    Callback(std::nullptr_t) noexcept {}

    template <class F, class D = std::decay_t<F>,
              class = std::enable_if_t<!std::is_same_v<D, Callback> &&
                                       std::is_invocable_r_v<R, D&, Args...>>>
    Callback(F&& fn) {  // NOLINT(google-explicit-constructor): callables convert implicitly
        if constexpr (fits_inline<D>()) {
            ::new (static_cast<void*>(_storage)) D(std::forward<F>(fn));
            _ops = &inline_ops<D>;
        } else {
            *reinterpret_cast<D**>(_storage) = new D(std::forward<F>(fn));
            _ops = &heap_ops<D>;
        }
    }

    Callback(Callback&& other) noexcept : _ops(other._ops) {
        if (_ops != nullptr) {
            _ops->move(_storage, other._storage);
            other._ops = nullptr;
        }
    }

    Callback& operator=(Callback&& other) noexcept {
        if (this != &other) {
            reset();
            _ops = other._ops;
            if (_ops != nullptr) {
                _ops->move(_storage, other._storage);
                other._ops = nullptr;
            }
        }
        return *this;
    }

    Callback(const Callback&) = delete;
    Callback& operator=(const Callback&) = delete;

    ~Callback() { reset(); }

    void reset() noexcept {
        if (_ops != nullptr) {
            _ops->destroy(_storage);
            _ops = nullptr;
        }
    }

    explicit operator bool() const noexcept { return _ops != nullptr; }

    R operator()(Args... args) { return _ops->invoke(_storage, std::forward<Args>(args)...); }

    // The callable's type, for debug-mode logs (asyncio shows the callback's repr).
    const std::type_info& target_type() const noexcept {
        return _ops != nullptr ? _ops->type : typeid(void);
    }

private:
    struct Ops {
        R (*invoke)(void* storage, Args&&... args);
        void (*move)(void* dst, void* src) noexcept;
        void (*destroy)(void* storage) noexcept;
        const std::type_info& type;
    };

    template <class D>
    static constexpr bool fits_inline() {
        return sizeof(D) <= inline_size && alignof(D) <= alignof(std::max_align_t) &&
               std::is_nothrow_move_constructible_v<D>;
    }

    template <class D>
    static constexpr Ops inline_ops{
        [](void* s, Args&&... args) -> R {
            return (*std::launder(static_cast<D*>(s)))(std::forward<Args>(args)...);
        },
        [](void* dst, void* src) noexcept {
            D* from = std::launder(static_cast<D*>(src));
            ::new (dst) D(std::move(*from));
            from->~D();
        },
        [](void* s) noexcept { std::launder(static_cast<D*>(s))->~D(); },
        typeid(D),
    };

    template <class D>
    static constexpr Ops heap_ops{
        [](void* s, Args&&... args) -> R {
            return (**static_cast<D**>(s))(std::forward<Args>(args)...);
        },
        [](void* dst, void* src) noexcept { *static_cast<D**>(dst) = *static_cast<D**>(src); },
        [](void* s) noexcept { delete *static_cast<D**>(s); },
        typeid(D),
    };

    alignas(std::max_align_t) unsigned char _storage[inline_size];
    const Ops* _ops = nullptr;
};

}  // namespace shardloop::detail
