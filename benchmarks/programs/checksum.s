# Internet-checksum style (RFC 1071): one's complement sum of the input's 16-bit
# little-endian words (an odd last byte counts as a word with a zero high byte),
# carries folded back into the low 16 bits, then complemented.
# Input: the buffer; r1 = its address, r2 = its length.
    mov r0, 0
    mov r3, r1              # cursor
    mov r4, r2
    rsh r4, 1               # whole words left
    jeq r4, 0, tail
word:
    ldxh r5, [r3]
    add r0, r5
    add r3, 2
    sub r4, 1
    jne r4, 0, word
tail:
    jset r2, 1, odd
    ja fold
odd:
    ldxb r5, [r3]
    add r0, r5
fold:
    mov r5, r0
    rsh r5, 16
    jeq r5, 0, done
    and r0, 0xffff
    add r0, r5
    ja fold
done:
    xor r0, 0xffff
    exit
