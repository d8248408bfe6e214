#pragma once

// An intrusive reference for the loop's shard-local objects (handles,
// futures, tasks). The count is a plain integer: these objects never cross
// threads, so no atomic operation is paid on every copy.

#include <utility>

namespace shardloop::detail {

// T provides add_ref() and release().
template <class T>
class Ref {
public:
    Ref() noexcept = default;
    Ref(std::nullptr_t) noexcept {}
    // Takes a new reference to `p`.
    explicit Ref(T* p) noexcept : _p(p) {
        if (_p != nullptr) {
            _p->add_ref();
        }
    }
    // Adopts a reference the caller already holds.
    static Ref adopt(T* p) noexcept {
        Ref r;
        r._p = p;
        return r;
    }

    Ref(const Ref& other) noexcept : Ref(other._p) {}
    Ref(Ref&& other) noexcept : _p(std::exchange(other._p, nullptr)) {}
    template <class U>
    Ref(const Ref<U>& other) noexcept : Ref(static_cast<T*>(other.get())) {}

    Ref& operator=(Ref other) noexcept {
        std::swap(_p, other._p);
        return *this;
    }
    ~Ref() { reset(); }

    void reset() noexcept {
        if (T* p = std::exchange(_p, nullptr)) {
            p->release();
        }
    }
    // Gives up the reference without releasing it.
    T* detach() noexcept { return std::exchange(_p, nullptr); }

    T* get() const noexcept { return _p; }
    T* operator->() const noexcept { return _p; }
    T& operator*() const noexcept { return *_p; }
    explicit operator bool() const noexcept { return _p != nullptr; }
    friend bool operator==(const Ref& a, const Ref& b) noexcept { return a._p == b._p; }

private:
    T* _p = nullptr;
};

}  // namespace shardloop::detail
