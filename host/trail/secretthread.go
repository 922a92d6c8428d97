package trail

import "runtime"

// Every operation on a secret runs on one goroutine whose stack never moves,
// locked to its thread for the operation; what it leaves behind is erased
// before anything else can see it:
//
//   - Stack: the scalar arithmetic decodes a scalar through local arrays,
//     so the frames it used hold copies; scrubStack overwrites them after
//     each operation. The runtime moves a goroutine's stack when it grows,
//     and when the collector shrinks one that uses less than a quarter of
//     it, and frees the old one unerased: this goroutine's stack is grown
//     once, before any secret, and holds a live frame large enough never to
//     be shrunk.
//   - Registers: copying 32 bytes goes through vector registers, and they
//     keep the bytes until something else overwrites them. A signal taken
//     by the thread makes the kernel save every register into a frame on
//     the thread's signal stack (Go heap memory, never erased), and an
//     asynchronous preemption saves them on the stack of whatever goroutine
//     runs next on that thread. So, during an operation, the goroutine stays
//     on its thread and the thread blocks every signal; after it, the
//     registers are zeroed before the signals are let in again and before
//     the thread runs anything else. (A thread kept for this goroutine
//     alone would do too, but waking it for each operation tripled the cost
//     of a signature.)
var secretOps = make(chan func())

func init() { go secretLoop() }

func secretLoop() {
	var anchor [20 << 10]byte // live for ever: the stack stays over a quarter used
	anchor[0] = 1
	scrubStack() // grow the stack to its final size now
	for op := range secretOps {
		runMasked(op)
		scrubStack()
	}
	runtime.KeepAlive(&anchor)
}

// onSecretStack runs op on the secret goroutine and waits for it.
func onSecretStack(op func()) {
	done := make(chan struct{})
	secretOps <- func() { op(); close(done) }
	<-done
}

// scrubStack overwrites the stack below its caller's frame.
//
//go:noinline
func scrubStack() byte {
	var b [16 << 10]byte
	for i := range b {
		b[i] = 0
	}
	return b[len(b)/2]
}
