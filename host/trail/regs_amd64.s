#include "textflag.h"

// The general-purpose registers an ABI0 function may clobber; SP, BP and
// R14 (g) stay, the call's wrapper restores R14 and X15 anyway.
#define CLEAR_GP \
	XORQ AX, AX \
	XORQ BX, BX \
	XORQ CX, CX \
	XORQ DX, DX \
	XORQ SI, SI \
	XORQ DI, DI \
	XORQ R8, R8 \
	XORQ R9, R9 \
	XORQ R10, R10 \
	XORQ R11, R11 \
	XORQ R12, R12 \
	XORQ R13, R13 \
	XORQ R15, R15

// func clearRegistersSSE()
TEXT ·clearRegistersSSE(SB), NOSPLIT, $0-0
	CLEAR_GP
	PXOR X0, X0
	PXOR X1, X1
	PXOR X2, X2
	PXOR X3, X3
	PXOR X4, X4
	PXOR X5, X5
	PXOR X6, X6
	PXOR X7, X7
	PXOR X8, X8
	PXOR X9, X9
	PXOR X10, X10
	PXOR X11, X11
	PXOR X12, X12
	PXOR X13, X13
	PXOR X14, X14
	PXOR X15, X15
	RET

// func clearRegistersAVX()
TEXT ·clearRegistersAVX(SB), NOSPLIT, $0-0
	CLEAR_GP
	VZEROALL
	RET

// func clearRegistersAVX512()
// VZEROALL zeroes registers 0-15 whole (ZMM included); 16-31 are apart.
TEXT ·clearRegistersAVX512(SB), NOSPLIT, $0-0
	CLEAR_GP
	VZEROALL
	VPXORQ Z16, Z16, Z16
	VPXORQ Z17, Z17, Z17
	VPXORQ Z18, Z18, Z18
	VPXORQ Z19, Z19, Z19
	VPXORQ Z20, Z20, Z20
	VPXORQ Z21, Z21, Z21
	VPXORQ Z22, Z22, Z22
	VPXORQ Z23, Z23, Z23
	VPXORQ Z24, Z24, Z24
	VPXORQ Z25, Z25, Z25
	VPXORQ Z26, Z26, Z26
	VPXORQ Z27, Z27, Z27
	VPXORQ Z28, Z28, Z28
	VPXORQ Z29, Z29, Z29
	VPXORQ Z30, Z30, Z30
	VPXORQ Z31, Z31, Z31
	RET
