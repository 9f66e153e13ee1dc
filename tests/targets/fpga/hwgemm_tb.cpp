// Verilator testbench of GemmCore (rtl/gemm_unit.py), driven by commands on stdin (hex values are
// little-endian integers written most significant digit first):
//   A <word> <hex> <mask>   write ACT word (bk bytes) with a byte-enable mask
//   W <tile> <hex> <mask>   write WGT tile rows (a row-enable mask)
//   I <hex>          run one instruction (256 bits): pulse start, wait for done; prints "D <cycles>"
//   R <row>          read ACC row; prints "R <hex>"
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>
#include "Vgemm_core.h"
#include "verilated.h"

static std::vector<uint32_t> parse_hex(const std::string& s) {
    std::vector<uint32_t> w;
    for (int end = (int)s.size(); end > 0; end -= 8) {
        int start = end - 8 < 0 ? 0 : end - 8;
        w.push_back((uint32_t)std::stoul(s.substr(start, end - start), nullptr, 16));
    }
    return w;
}
template <typename T> static void set_port(T& p, const std::vector<uint32_t>& w) {
    uint64_t v = w.empty() ? 0 : w[0];
    if (w.size() > 1) v |= (uint64_t)w[1] << 32;
    p = (T)v;
}
template <std::size_t N> static void set_port(VlWide<N>& p, const std::vector<uint32_t>& w) {
    for (std::size_t i = 0; i < N; i++) p[i] = i < w.size() ? w[i] : 0;
}
template <std::size_t N> static std::string hex_of(const VlWide<N>& p) {
    std::string out;
    char buf[16];
    for (std::size_t i = N; i-- > 0;) { std::snprintf(buf, sizeof buf, "%08x", (unsigned)p[i]); out += buf; }
    return out;
}

int main(int argc, char** argv) {
    VerilatedContext ctx;
    ctx.commandArgs(argc, argv);
    Vgemm_core top(&ctx);
    auto tick = [&]() { top.clk = 0; top.eval(); top.clk = 1; top.eval(); };
    top.rst = 1; tick(); tick(); top.rst = 0;
    std::string cmd;
    while (std::cin >> cmd) {
        if (cmd == "A" || cmd == "W") {
            unsigned long addr; std::string hex, mask;
            std::cin >> addr >> hex >> mask;
            if (cmd == "A") {
                top.act_wr_addr = addr; set_port(top.act_wr_data, parse_hex(hex)); set_port(top.act_wr_en, parse_hex(mask));
            } else {
                top.wgt_wr_addr = addr; set_port(top.wgt_wr_data, parse_hex(hex)); set_port(top.wgt_wr_en, parse_hex(mask));
            }
            tick();
            set_port(top.act_wr_en, {0u, 0u}); set_port(top.wgt_wr_en, {0u, 0u});
        } else if (cmd == "I") {
            std::string hex; std::cin >> hex;
            set_port(top.insn, parse_hex(hex));
            top.start = 1; top.eval();
            long cycles = 0;
            while (!top.done) { tick(); top.start = 0; top.eval(); if (++cycles > 1000000) return 2; }
            tick();
            std::printf("D %ld\n", cycles);
        } else if (cmd == "R") {
            unsigned long row; std::cin >> row;
            top.acc_rd_addr = row; top.acc_rd_en = 1; tick(); top.acc_rd_en = 0; top.eval();
            std::printf("R %s\n", hex_of(top.acc_rd_data).c_str());
        } else {
            std::fprintf(stderr, "unknown command %s\n", cmd.c_str());
            return 1;
        }
    }
    top.final();
    return 0;
}
