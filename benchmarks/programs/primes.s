# Count the primes below N by trial division: n is prime when no d with d*d <= n
# divides it; "d*d <= n" is tested as "d <= n / d", so each step divides twice.
# Input: N as a little-endian u64.
    ldxdw r1, [r1]
    mov r0, 0               # primes found
    mov r6, 2               # n
outer:
    jge r6, r1, done
    mov r7, 2               # d
inner:
    mov r8, r6
    div r8, r7
    jlt r8, r7, prime       # d * d > n: no divisor left to try
    mov r8, r6
    mod r8, r7
    jeq r8, 0, next         # d divides n
    add r7, 1
    ja inner
prime:
    add r0, 1
next:
    add r6, 1
    ja outer
done:
    exit
