/* C twin of checksum.s: RFC 1071 style 16-bit one's complement sum. */
#include <stdint.h>
#include <string.h>

uint64_t checksum(const uint8_t *mem, uint64_t len)
{
    uint64_t sum = 0;
    uint64_t i = 0;
    for (; i + 2 <= len; i += 2) {
        uint16_t word;
        memcpy(&word, mem + i, sizeof word);
        sum += word;
    }
    if (len & 1)
        sum += mem[i];
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return sum ^ 0xffff;
}
