/* C twin of filter.s: unfragmented IPv4 TCP to port 80. */
#include <stdint.h>

uint64_t filter(const uint8_t *mem, uint64_t len)
{
    if (len < 34 || mem[12] != 0x08 || mem[13] != 0x00 || mem[23] != 6)
        return 0;
    if ((mem[20] & 0x1f) || mem[21])
        return 0;
    uint64_t ihl = (uint64_t)(mem[14] & 0xf) * 4;
    if (ihl < 20 || 14 + ihl + 4 > len)
        return 0;
    return mem[14 + ihl + 2] == 0 && mem[14 + ihl + 3] == 80;
}
