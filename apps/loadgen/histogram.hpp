#pragma once

// LatencyHistogram: an HdrHistogram-style log-linear histogram of
// nanoseconds. Values below 128 ns get a bucket each; above, every power
// of two [2^m, 2^(m+1)) is cut into 64 equal buckets, so a bucket is at
// most 1/64 of the values in it wide. A percentile is reported as the
// middle of its bucket (clamped to the recorded minimum and maximum), which
// is within 1/128 of the exact value. 3,776 counters (30 KiB) cover the
// whole uint64_t range: recording never clamps, never allocates, and costs
// a bit scan, a shift and an increment.
//
// Not thread-safe: each shard records into its own and the shards' copies
// are merged at the end.

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace shardloop::loadgen {

class LatencyHistogram {
public:
    // How far a reported percentile may be from the exact one, relative to it.
    static constexpr double relative_error = 1.0 / 128;

    void record(uint64_t ns) noexcept {
        ++_counts[index_of(ns)];
        ++_total;
        _sum += ns;
        _max = std::max(_max, ns);
        _min = std::min(_min, ns);
    }

    void merge(const LatencyHistogram& other) noexcept {
        for (std::size_t i = 0; i < bucket_count; ++i) {
            _counts[i] += other._counts[i];
        }
        _total += other._total;
        _sum += other._sum;
        _max = std::max(_max, other._max);
        _min = std::min(_min, other._min);
    }

    uint64_t count() const noexcept { return _total; }
    uint64_t max() const noexcept { return _max; }
    uint64_t min() const noexcept { return _total == 0 ? 0 : _min; }
    double mean() const noexcept {
        return _total == 0 ? 0.0 : static_cast<double>(_sum) / static_cast<double>(_total);
    }

    // The value at quantile q in [0, 1]: the smallest recorded value that at
    // least a fraction q of the values do not exceed (q = 0 gives the
    // minimum, 1 the maximum), within relative_error. 0 when empty.
    uint64_t percentile(double q) const noexcept {
        if (_total == 0) {
            return 0;
        }
        double wanted = std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(_total));
        uint64_t rank = std::clamp<uint64_t>(static_cast<uint64_t>(wanted), 1, _total);
        if (rank == _total) {
            return _max;  // kept exactly
        }
        if (rank == 1) {
            return _min;
        }
        uint64_t seen = 0;
        for (std::size_t i = 0; i < bucket_count; ++i) {
            seen += _counts[i];
            if (seen >= rank) {
                return std::clamp(middle_of(i), _min, _max);
            }
        }
        return _max;
    }

private:
    static constexpr unsigned sub_bits = 6;
    static constexpr uint64_t sub_count = uint64_t{1} << sub_bits;
    // Linear below 2 * sub_count; then a block of sub_count per shift 1..(64 - sub_bits - 1).
    static constexpr std::size_t bucket_count = (64 - sub_bits) * sub_count + sub_count;

    static std::size_t index_of(uint64_t v) noexcept {
        if (v < 2 * sub_count) {
            return static_cast<std::size_t>(v);
        }
        unsigned shift = static_cast<unsigned>(std::bit_width(v)) - 1 - sub_bits;
        // v >> shift lies in [sub_count, 2 * sub_count): v's top sub_bits + 1 bits.
        return static_cast<std::size_t>(shift * sub_count + (v >> shift));
    }

    static uint64_t middle_of(std::size_t index) noexcept {
        if (index < 2 * sub_count) {
            return index;
        }
        unsigned shift = static_cast<unsigned>(index / sub_count) - 1;
        uint64_t low = (index - shift * sub_count) << shift;
        return low + ((uint64_t{1} << shift) >> 1);
    }

    std::array<uint64_t, bucket_count> _counts{};
    uint64_t _total = 0;
    uint64_t _sum = 0;
    uint64_t _max = 0;
    uint64_t _min = std::numeric_limits<uint64_t>::max();
};

}  // namespace shardloop::loadgen
