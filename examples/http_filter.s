# Accept IPv4 TCP packets to port 80: r0 = 1 to accept, 0 to drop.
# Input: an Ethernet frame; r1 = its address, r2 = its length.
    mov r6, r1
    add r6, r2                  # r6 = one past the last byte
    mov r3, r1
    add r3, 34                  # Ethernet (14) + minimal IPv4 header (20)
    jgt r3, r6, drop
    ldxh r3, [r1+12]            # EtherType, in network byte order
    be16 r3
    jne r3, 0x0800, drop        # not IPv4
    ldxb r3, [r1+23]            # IPv4 protocol
    jne r3, 6, drop             # not TCP
    ldxb r4, [r1+14]            # version and header length
    and r4, 0x0f
    lsh r4, 2                   # header length in bytes
    add r4, r1
    mov r5, r4
    add r5, 18                  # end of the TCP destination port
    jgt r5, r6, drop
    ldxh r3, [r4+16]            # TCP destination port
    be16 r3
    jne r3, 80, drop
    mov r0, 1
    exit
drop:
    mov r0, 0
    exit
