# fib(r1) by bpf-to-bpf recursion; run with: pybpf run examples/fibonacci.s
    mov r1, 7
    call local fib
    exit
# r0 = fib(r1); r6 and r7 are callee-saved, so the calls below keep them
fib:
    mov r0, r1
    jle r1, 1, done
    mov r6, r1
    sub r1, 1
    call local fib
    mov r7, r0
    mov r1, r6
    sub r1, 2
    call local fib
    add r0, r7
done:
    exit
