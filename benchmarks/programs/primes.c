/* C twin of primes.s: count primes below N by trial division. */
#include <stdint.h>
#include <string.h>

uint64_t primes(const uint8_t *mem, uint64_t len)
{
    uint64_t limit, count = 0;
    (void)len;
    memcpy(&limit, mem, sizeof limit);
    for (uint64_t n = 2; n < limit; n++) {
        for (uint64_t d = 2;; d++) {
            if (n / d < d) {
                count++;
                break;
            }
            if (n % d == 0)
                break;
        }
    }
    return count;
}
