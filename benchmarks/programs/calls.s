# bpf-to-bpf calls: a loop that calls a small mixing function once per iteration.
# Input: the iteration count as a little-endian u64.
    ldxdw r6, [r1]          # r6, r7 are callee-saved: they survive the calls
    mov r7, 0
    jeq r6, 0, done
loop:
    mov r1, r7
    mov r2, r6
    call local mix
    mov r7, r0
    sub r6, 1
    jne r6, 0, loop
done:
    mov r0, r7
    exit
# r0 = (r1 ^ r2) * 0x2545f491 + (r1 >> 7)
mix:
    mov r0, r1
    xor r0, r2
    mul r0, 0x2545f491
    rsh r1, 7
    add r0, r1
    exit
