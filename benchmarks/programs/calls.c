/* C twin of calls.s; mix stays a real call, as it is in the eBPF program. */
#include <stdint.h>
#include <string.h>

__attribute__((noinline)) static uint64_t mix(uint64_t acc, uint64_t n)
{
    return (acc ^ n) * 0x2545f491u + (acc >> 7);
}

uint64_t calls(const uint8_t *mem, uint64_t len)
{
    uint64_t n, acc = 0;
    (void)len;
    memcpy(&n, mem, sizeof n);
    for (; n != 0; n--)
        acc = mix(acc, n);
    return acc;
}
