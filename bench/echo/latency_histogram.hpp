// A log-linear latency histogram in nanoseconds, in the spirit of
// HdrHistogram but a few lines long: values below 256 ns get one bucket
// each; above, every power-of-two range [2^m, 2^(m+1)) is split into 128
// equal buckets. A reported percentile is the middle of its bucket, so it
// is within 1/256 (0.4%) of a recorded value; the maximum is kept exactly.
// 7,424 counters (58 KiB) cover the whole uint64_t range, so recording never
// clamps and never allocates.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>

namespace echo_bench {

class LatencyHistogram {
public:
    void record(uint64_t ns) {
        ++_counts[index_of(ns)];
        ++_total;
        _max = std::max(_max, ns);
    }

    void merge(const LatencyHistogram& other) {
        for (size_t i = 0; i < bucket_count; ++i) {
            _counts[i] += other._counts[i];
        }
        _total += other._total;
        _max = std::max(_max, other._max);
    }

    uint64_t count() const { return _total; }
    uint64_t max() const { return _max; }

    // The value at quantile q in [0, 1] (the smallest recorded value that at
    // least q of all values do not exceed); 0 when nothing was recorded.
    uint64_t percentile(double q) const {
        if (_total == 0) {
            return 0;
        }
        auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(_total)));
        rank = std::clamp<uint64_t>(rank, 1, _total);
        uint64_t seen = 0;
        for (size_t i = 0; i < bucket_count; ++i) {
            seen += _counts[i];
            if (seen >= rank) {
                return std::min(middle_of(i), _max);
            }
        }
        return _max;
    }

private:
    static constexpr unsigned sub_bits = 7;  // 128 buckets per power of two
    static constexpr uint64_t sub_count = uint64_t{1} << sub_bits;
    // Linear below 2 * sub_count; then one block of sub_count buckets per shift 1..56.
    static constexpr size_t bucket_count = (64 - sub_bits) * sub_count + sub_count;

    static size_t index_of(uint64_t v) {
        if (v < 2 * sub_count) {
            return static_cast<size_t>(v);
        }
        unsigned shift = static_cast<unsigned>(std::bit_width(v)) - 1 - sub_bits;
        // v >> shift lies in [sub_count, 2 * sub_count): the top sub_bits+1 bits of v.
        return static_cast<size_t>(shift * sub_count + (v >> shift));
    }

    static uint64_t middle_of(size_t index) {
        if (index < 2 * sub_count) {
            return index;
        }
        unsigned shift = static_cast<unsigned>(index / sub_count) - 1;
        uint64_t low = (index - shift * sub_count) << shift;
        return low + ((uint64_t{1} << shift) >> 1);
    }

    std::array<uint64_t, bucket_count> _counts{};
    uint64_t _total = 0;
    uint64_t _max = 0;
};

}  // namespace echo_bench
