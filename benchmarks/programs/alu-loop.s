# Tight ALU loop: add, xor, shift left then right (clears bit 63), count down.
# Input: the iteration count as a little-endian u64.
    ldxdw r1, [r1]
    mov r0, 0
    jeq r1, 0, done
loop:
    add r0, r1
    xor r0, 0x5a
    lsh r0, 1
    rsh r0, 1
    sub r1, 1
    jne r1, 0, loop
done:
    exit
