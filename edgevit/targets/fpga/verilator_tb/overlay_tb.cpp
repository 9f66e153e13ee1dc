// Verilator testbench of the overlay's top level (edgevit/targets/fpga/rtl/overlay.py).
//
// A DDR model behind an AXI4 slave (latency DDR_LATENCY cycles from an accepted burst to its first
// beat, then one bus word a cycle: cfg.bus_bytes per cycle; several bursts in flight, answered in
// order), optional random back-pressure on every slave handshake, and an AXI4-Lite master that
// programs the registers (INSN_BASE, INSN_COUNT, DDR_BASE), starts, polls CTRL.done and reads the
// counters. The Python side (runners/verilator.py) prepends the configuration header (BUS_BYTES,
// the register table) and runs:
//     Vedgevit_overlay DDR_IN DDR_OUT INSN_OFFSET INSN_COUNT LATENCY STALL_PERCENT SEED MAX_CYCLES
// DDR_IN holds the DDR image (offsets relative to DDR_BASE); DDR_OUT gets the DDR after the run.
// Standard output: "COUNTER <name> <value>" per read-only register, "TB_CYCLES <n>", "TB_DONE".
// Exit 2 with "TB_ERROR <message>" on standard error for a protocol violation, an access outside
// the DDR, the overlay's error output, or MAX_CYCLES cycles without done.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "Vedgevit_overlay.h"
#include "verilated.h"

static const uint64_t DDR_PHYS = 0x10000000ull;  // physical address of DDR offset 0 (DDR_BASE)
static const int MAX_OUTSTANDING = 8;

static void fail(const std::string& msg) {
    fprintf(stderr, "TB_ERROR %s\n", msg.c_str());
    exit(2);
}

static void put_bus(uint64_t& s, const uint8_t* p) { uint64_t v = 0; memcpy(&v, p, 8); s = v; }
template <std::size_t W> static void put_bus(VlWide<W>& s, const uint8_t* p) {
    for (std::size_t i = 0; i < W; i++) { uint32_t w; memcpy(&w, p + 4 * i, 4); s[i] = w; }
}
static void get_bus(const uint64_t& s, uint8_t* p) { memcpy(p, &s, 8); }
template <std::size_t W> static void get_bus(const VlWide<W>& s, uint8_t* p) {
    for (std::size_t i = 0; i < W; i++) { uint32_t w = s[i]; memcpy(p + 4 * i, &w, 4); }
}

struct Burst { uint64_t addr; int beats; int beat; uint64_t ready; };

struct Tb {
    Vedgevit_overlay* top;
    std::vector<uint8_t> ddr;
    uint64_t cycle = 0;
    int latency = 40, stall_pct = 0;
    std::mt19937 rng{1};
    std::deque<Burst> rq, wq;            // read bursts; write bursts awaiting data
    std::deque<uint64_t> bq;             // write responses: ready cycle
    // AXI4-Lite master state
    bool l_aw = false, l_w = false, l_b = false, l_ar = false, l_r = false;
    uint32_t l_rdata = 0;

    bool stall() { return stall_pct > 0 && (int)(rng() % 100) < stall_pct; }

    void check_burst(uint64_t addr, int beats, int size, const char* what) {
        if ((1 << size) != BUS_BYTES) fail(std::string(what) + ": AxSIZE is not the bus width");
        if (beats < 1 || beats > 256) fail(std::string(what) + ": burst length out of 1..256");
        if (addr % BUS_BYTES) fail(std::string(what) + ": unaligned burst address");
        if ((addr & ~4095ull) != ((addr + (uint64_t)beats * BUS_BYTES - 1) & ~4095ull))
            fail(std::string(what) + ": burst crosses a 4 KB boundary at " + std::to_string(addr));
        if (addr < DDR_PHYS || addr + (uint64_t)beats * BUS_BYTES > DDR_PHYS + ddr.size())
            fail(std::string(what) + ": burst outside the DDR image at " + std::to_string(addr));
    }

    void tick() {
        // Slave outputs for this cycle.
        top->m_axi_arready = rq.size() < MAX_OUTSTANDING && !stall();
        bool rv = !rq.empty() && cycle >= rq.front().ready && !stall();
        top->m_axi_rvalid = rv;
        if (rv) {
            Burst& b = rq.front();
            put_bus(top->m_axi_rdata, &ddr[b.addr - DDR_PHYS + (uint64_t)b.beat * BUS_BYTES]);
            top->m_axi_rlast = b.beat == b.beats - 1;
        }
        top->m_axi_rresp = 0;
        top->m_axi_awready = wq.size() < MAX_OUTSTANDING && !stall();
        top->m_axi_wready = !wq.empty() && !stall();
        bool bv = !bq.empty() && cycle >= bq.front() && !stall();
        top->m_axi_bvalid = bv;
        top->m_axi_bresp = 0;
        top->s_axil_awvalid = l_aw; top->s_axil_wvalid = l_w; top->s_axil_bready = l_b;
        top->s_axil_arvalid = l_ar; top->s_axil_rready = l_r; top->s_axil_wstrb = 0xF;
        top->eval();
        // Handshakes of this cycle.
        bool ar = top->m_axi_arvalid && top->m_axi_arready, r = rv && top->m_axi_rready;
        bool aw = top->m_axi_awvalid && top->m_axi_awready, w = top->m_axi_wvalid && top->m_axi_wready;
        bool b = bv && top->m_axi_bready;
        if (ar) {
            check_burst(top->m_axi_araddr, top->m_axi_arlen + 1, top->m_axi_arsize, "read");
            uint64_t ready = cycle + latency;
            if (!rq.empty()) {  // in order, one beat a cycle: after the bursts already queued
                const Burst& last = rq.back();
                uint64_t end = std::max<uint64_t>(last.ready, cycle) + (last.beats - last.beat);
                if (end > ready) ready = end;
            }
            rq.push_back({top->m_axi_araddr, (int)top->m_axi_arlen + 1, 0, ready});
        }
        if (aw) {
            check_burst(top->m_axi_awaddr, top->m_axi_awlen + 1, top->m_axi_awsize, "write");
            wq.push_back({top->m_axi_awaddr, (int)top->m_axi_awlen + 1, 0, 0});
        }
        if (w) {
            Burst& wb = wq.front();
            uint8_t data[BUS_BYTES];
            get_bus(top->m_axi_wdata, data);
            uint64_t off = wb.addr - DDR_PHYS + (uint64_t)wb.beat * BUS_BYTES;
            for (int i = 0; i < BUS_BYTES; i++)
                if ((top->m_axi_wstrb >> i) & 1) ddr[off + i] = data[i];
            bool last = wb.beat == wb.beats - 1;
            if ((bool)top->m_axi_wlast != last) fail("WLAST does not mark the burst's last beat");
            if (++wb.beat == wb.beats) { wq.pop_front(); bq.push_back(cycle + latency); }
        }
        bool l_awf = l_aw && top->s_axil_awready, l_wf = l_w && top->s_axil_wready;
        bool l_bf = l_b && top->s_axil_bvalid, l_arf = l_ar && top->s_axil_arready;
        bool l_rf = l_r && top->s_axil_rvalid;
        if (l_rf) l_rdata = top->s_axil_rdata;
        if (top->error) fail("the overlay raised its error output (an AXI error response)");
        top->clk = 1; top->eval(); top->clk = 0; top->eval();
        cycle++;
        if (r) { Burst& h = rq.front(); if (++h.beat == h.beats) rq.pop_front(); }
        if (b) bq.pop_front();
        if (l_awf) l_aw = false;
        if (l_wf) l_w = false;
        if (!l_aw && !l_w && l_b && l_bf) l_b = false;
        if (l_arf) l_ar = false;
        if (l_rf) l_r = false;
    }

    void lite_write(uint32_t addr, uint32_t data) {
        top->s_axil_awaddr = addr; top->s_axil_wdata = data;
        l_aw = l_w = l_b = true;
        for (int i = 0; l_aw || l_w || l_b; i++) { if (i > 1000) fail("AXI-Lite write timed out"); tick(); }
    }
    uint32_t lite_read(uint32_t addr) {
        top->s_axil_araddr = addr;
        l_ar = l_r = true;
        for (int i = 0; l_ar || l_r; i++) { if (i > 1000) fail("AXI-Lite read timed out"); tick(); }
        return l_rdata;
    }
};

int main(int argc, char** argv) {
    if (argc != 9) fail("usage: DDR_IN DDR_OUT INSN_OFFSET INSN_COUNT LATENCY STALL_PERCENT SEED MAX_CYCLES");
    Tb tb;
    FILE* f = fopen(argv[1], "rb");
    if (!f) fail(std::string("cannot read ") + argv[1]);
    fseek(f, 0, SEEK_END); long n = ftell(f); fseek(f, 0, SEEK_SET);
    tb.ddr.resize(n + 4096);  // slack: a burst may read a little past the image's end
    if (fread(tb.ddr.data(), 1, n, f) != (size_t)n) fail("short read of the DDR image");
    fclose(f);
    uint64_t insn_offset = strtoull(argv[3], 0, 0), insn_count = strtoull(argv[4], 0, 0);
    tb.latency = atoi(argv[5]); tb.stall_pct = atoi(argv[6]); tb.rng.seed(strtoul(argv[7], 0, 0));
    uint64_t max_cycles = strtoull(argv[8], 0, 0);

    tb.top = new Vedgevit_overlay;
    tb.top->clk = 0; tb.top->rst = 1;
    for (int i = 0; i < 4; i++) { tb.top->eval(); tb.top->clk = 1; tb.top->eval(); tb.top->clk = 0; tb.top->eval(); }
    tb.top->rst = 0;
    tb.lite_write(REG_INSN_BASE, (uint32_t)(DDR_PHYS + insn_offset));
    tb.lite_write(REG_INSN_COUNT, (uint32_t)insn_count);
    tb.lite_write(REG_DDR_BASE, (uint32_t)DDR_PHYS);
    tb.lite_write(REG_CTRL, CTRL_START);
    uint64_t start = tb.cycle;
    while (!(tb.lite_read(REG_CTRL) & CTRL_DONE)) {
        for (int i = 0; i < 64; i++) tb.tick();
        if (tb.cycle - start > max_cycles) fail("no done after " + std::to_string(max_cycles) + " cycles");
    }
    for (int i = 0; i < 4 * tb.latency + 16; i++) tb.tick();  // let the last write responses land
    for (const auto& r : COUNTER_REGS) printf("COUNTER %s %u\n", r.name, tb.lite_read(r.offset));
    printf("TB_CYCLES %llu\n", (unsigned long long)(tb.cycle - start));
    FILE* o = fopen(argv[2], "wb");
    if (!o || fwrite(tb.ddr.data(), 1, n, o) != (size_t)n) fail(std::string("cannot write ") + argv[2]);
    fclose(o);
    printf("TB_DONE\n");
    tb.top->final();
    delete tb.top;
    return 0;
}
