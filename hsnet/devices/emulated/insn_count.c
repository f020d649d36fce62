/*
 * hsnet's QEMU TCG plugin: guest instructions executed between two marker system calls, with the instruction
 * classes that show which kernels ran.
 *
 * The guest brackets each counted call with syscall(0x4D41) and syscall(0x4D42) (numbers no kernel uses; qemu
 * answers ENOSYS). At the second marker the plugin appends one line to the file named by the environment variable
 * HSNET_INSN_FILE (qemu-user shares the guest's environment):
 *
 *     insns=N fmla=N sdot=N i8mm=N fp16=N sve=N sme=N
 *
 * Counting is inline (an add per translated block, and one per classified instruction), so it is exact and does
 * not depend on the host's speed. Built by benchmarks/emulated/build.sh against qemu-plugin.h of the installed
 * qemu; loaded with `qemu-aarch64 -plugin insn_count.so` (the dynamic qemu-aarch64: the static one has no plugins).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MARK_START 0x4D41
#define MARK_STOP 0x4D42

enum { FMLA, SDOT, I8MM, FP16, SVE, SME, N_CLASSES };
static const char *class_names[N_CLASSES] = {"fmla", "sdot", "i8mm", "fp16", "sve", "sme"};

static uint64_t total;
static uint64_t classes[N_CLASSES];
static uint64_t start_total;
static uint64_t start_classes[N_CLASSES];
static FILE *out;

/* A64 encodings (Arm ARM, "Advanced SIMD" and top-level decode). -1: not a class we report. */
static int classify(uint32_t w)
{
    uint32_t op0 = (w >> 25) & 0xF;
    if (op0 == 0x2) {
        return SVE; /* 0010: SVE (and SVE2) */
    }
    if (op0 == 0x0 && (w >> 31)) {
        return SME; /* 1xx0000: SME */
    }
    if ((w & 0xBFE0FC00) == 0x0E809C00 || (w & 0xDFE0F400) == 0x4E80A400 || (w & 0xBF40F400) == 0x0F00F000) {
        return I8MM; /* USDOT (vector), SMMLA/UMMLA/USMMLA, USDOT/SUDOT (by element) */
    }
    if ((w & 0x9FE0FC00) == 0x0E809400 || (w & 0x9FC0F400) == 0x0F80E000) {
        return SDOT; /* SDOT/UDOT (vector), SDOT/UDOT (by element) */
    }
    if ((w & 0xBFE0FC00) == 0x0E400C00 || (w & 0xBFC0F400) == 0x0F001000 || (w & 0x9F60C400) == 0x0E400400) {
        return FP16; /* FMLA (vector, half), FMLA (by element, half), the rest of three-same FP16 */
    }
    if ((w & 0xBFA0FC00) == 0x0E20CC00 || (w & 0xBF80F400) == 0x0F801000) {
        return FMLA; /* FMLA (vector, single/double), FMLA (by element, single/double) */
    }
    return -1;
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total, n);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t w;
        if (qemu_plugin_insn_size(insn) != sizeof(w)) {
            continue;
        }
        memcpy(&w, qemu_plugin_insn_data(insn), sizeof(w));
        int c = classify(w);
        if (c >= 0) {
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &classes[c], 1);
        }
    }
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2, uint64_t a3,
                       uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    if (num == MARK_START) {
        start_total = total;
        memcpy(start_classes, classes, sizeof(classes));
    } else if (num == MARK_STOP && out != NULL) {
        fprintf(out, "insns=%" PRIu64, total - start_total);
        for (int c = 0; c < N_CLASSES; c++) {
            fprintf(out, " %s=%" PRIu64, class_names[c], classes[c] - start_classes[c]);
        }
        fputc('\n', out);
        fflush(out);
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    const char *path = getenv("HSNET_INSN_FILE");
    if (path != NULL && *path) {
        out = fopen(path, "a");
        if (out == NULL) {
            fprintf(stderr, "insn_count: cannot open HSNET_INSN_FILE %s\n", path);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    return 0;
}
