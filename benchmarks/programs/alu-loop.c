/* C twin of alu-loop.s: the same loop on a 64-bit accumulator. */
#include <stdint.h>
#include <string.h>

uint64_t alu_loop(const uint8_t *mem, uint64_t len)
{
    uint64_t n, r0 = 0;
    (void)len;
    memcpy(&n, mem, sizeof n);
    for (; n != 0; n--) {
        r0 += n;
        r0 ^= 0x5a;
        r0 = (r0 << 1) >> 1;
    }
    return r0;
}
