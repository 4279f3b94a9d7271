# Insertion sort of up to 64 u32 values copied from the input onto the stack, then
# a position-sensitive checksum of the sorted array: h = h * 31 + a[i].
# Input: little-endian u32 values; r1 = their address, r2 = their length in bytes.
    mov r4, r2
    rsh r4, 2               # n = min(length / 4, 64)
    jle r4, 64, sized
    mov r4, 64
sized:
    lsh r4, 2               # the array's size in bytes
    mov r6, r10
    sub r6, 256             # a: 64 u32 slots at the bottom of the frame
    mov r3, 0               # byte offset
copy:
    jge r3, r4, sort
    mov r5, r1
    add r5, r3
    ldxw r0, [r5]
    mov r5, r6
    add r5, r3
    stxw [r5], r0
    add r3, 4
    ja copy
sort:
    mov r3, 4               # i = 1, as a byte offset
outer:
    jge r3, r4, sum
    mov r5, r6
    add r5, r3              # r5 = &a[j + 1], starting with j = i - 1
    ldxw r8, [r5]           # key = a[i]
shift:
    jeq r5, r6, place       # j < 0
    ldxw r9, [r5-4]
    jle r9, r8, place       # a[j] <= key
    stxw [r5], r9           # a[j + 1] = a[j]
    sub r5, 4
    ja shift
place:
    stxw [r5], r8
    add r3, 4
    ja outer
sum:
    mov r0, 0
    mov r3, 0
hash:
    jge r3, r4, done
    mov r5, r6
    add r5, r3
    ldxw r9, [r5]
    mul r0, 31
    add r0, r9
    add r3, 4
    ja hash
done:
    exit
