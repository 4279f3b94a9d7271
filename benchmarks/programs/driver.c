/* Timing driver linked with each C twin (compiled as a separate translation unit,
 * so the kernel cannot be inlined or hoisted out of the loop).  KERNEL names the
 * twin's function; times are measured in C so ctypes call overhead is excluded. */
#include <stdint.h>
#include <time.h>

uint64_t KERNEL(const uint8_t *mem, uint64_t len);

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Call the kernel once per record (records back to back in BUFFER), REPEAT times
 * over the batch; store each record's r0 in OUT and return the elapsed ns. */
uint64_t bench_batch(const uint8_t *buffer, const uint64_t *offsets, const uint64_t *lengths,
                     uint64_t count, uint64_t repeat, uint64_t *out)
{
    uint64_t start = now_ns();
    for (uint64_t r = 0; r < repeat; r++)
        for (uint64_t i = 0; i < count; i++)
            out[i] = KERNEL(buffer + offsets[i], lengths[i]);
    return now_ns() - start;
}
