/* C twin of sort.s: insertion sort of up to 64 u32 values, then h = h * 31 + a[i]. */
#include <stdint.h>
#include <string.h>

uint64_t sort(const uint8_t *mem, uint64_t len)
{
    uint32_t a[64];
    uint64_t n = len / 4 < 64 ? len / 4 : 64;
    uint64_t h = 0;
    memcpy(a, mem, n * 4);
    for (uint64_t i = 1; i < n; i++) {
        uint32_t key = a[i];
        uint64_t j = i;
        for (; j > 0 && a[j - 1] > key; j--)
            a[j] = a[j - 1];
        a[j] = key;
    }
    for (uint64_t i = 0; i < n; i++)
        h = h * 31 + a[i];
    return h;
}
