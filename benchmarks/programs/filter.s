# Packet filter: accept (r0 = 1) unfragmented IPv4 TCP packets to port 80, else 0.
# Input: an Ethernet frame; r1 = its address, r2 = its length.  Header fields are
# read little-endian and compared with byte-swapped constants (0x0008 is 0x0800).
    mov r0, 0
    jlt r2, 34, out         # Ethernet (14) + minimal IPv4 header (20)
    ldxh r3, [r1+12]
    jne r3, 0x0008, out     # EtherType IPv4
    ldxb r3, [r1+23]
    jne r3, 6, out          # protocol TCP
    ldxh r3, [r1+20]
    jset r3, 0xff1f, out    # fragment offset (13 bits) not zero
    ldxb r3, [r1+14]
    and r3, 0xf
    lsh r3, 2               # IPv4 header length in bytes
    jlt r3, 20, out
    mov r4, r3
    add r4, 18              # end of the TCP destination port: 14 + ihl + 4
    jgt r4, r2, out
    add r3, r1
    ldxh r3, [r3+16]        # TCP destination port
    jne r3, 0x5000, out     # port 80
    mov r0, 1
out:
    exit
