/* A simulated chip for the board clock drivers, compiled on the host (test_board_clock.py).
 *
 * Build: gcc -DFAKE_F7 | -DFAKE_H7 | -DFAKE_NRF -I<firmware dir> clock_fake_chip.c; run: ./chip SCENARIO.
 * The clock driver template (and cm7_cache.c) is compiled into this file with EDGEVIT_CLOCK_REG pointed
 * at fake_reg(), which, before every register access, plays the hardware (ready flags follow their
 * enables, SWS follows SW, tasks trigger events; a SCENARIO names the flag that never comes: hse, pll,
 * switch, overdrive, vos, xtal) and checks the chip's rules on every change: the clock running within the
 * voltage scale's limits, enough flash wait states for it, PLL settings changed only while the PLL is
 * off, HSEBYP only while HSE is off, over-drive and supply steps in order, the caches invalidated before
 * they are enabled. It prints every register at the end ("NAME=0x..."), the core clock the driver
 * reports, and a "VIOLATION ..." line per broken rule. Register addresses and bits are written here from
 * the reference manuals independently of the templates, so a wrong address in either shows up as an
 * access to an unknown register.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *name;
  uint32_t address, value, shadow;
} fake_register;

static const char *scenario = "ok";
static int violations;
static uint32_t dcisw_writes, iciallu_writes;
#if defined(FAKE_F7) || defined(FAKE_H7)
static unsigned char dcisw_seen[512][4]; /* [set][way] invalidated */
#endif

static void violation(const char *what, uint32_t a, uint32_t b) {
  if (violations++ < 20) {
    printf("VIOLATION %s (0x%08X, 0x%08X)\n", what, (unsigned)a, (unsigned)b);
  }
}

static int fault(const char *flag) { return strcmp(scenario, flag) == 0; }

#define SENTINEL 0xFFFFFFFFu
#define MHZ 1000000ull

#if defined(FAKE_F7) || defined(FAKE_H7)
#define CM7_REGISTERS                                                                              \
  {"SCB_CCR", 0xE000ED14u, 0x00040200u, 0}, {"SCB_CCSIDR", 0xE000ED80u, CCSIDR_VALUE, 0},          \
      {"SCB_CSSELR", 0xE000ED84u, 0u, 0}, {"SCB_ICIALLU", 0xE000EF50u, SENTINEL, 0},              \
      {"SCB_DCISW", 0xE000EF60u, SENTINEL, 0}
#endif

#ifdef FAKE_F7
#define CCSIDR_VALUE 0xF003E019u /* 4 KB D-cache: 32 sets, 4 ways, 32-byte lines */
static fake_register regs[] = {
    {"RCC_CR", 0x40023800u, 0x00000083u, 0},  {"RCC_PLLCFGR", 0x40023804u, 0x24003010u, 0},
    {"RCC_CFGR", 0x40023808u, 0u, 0},          {"RCC_APB1ENR", 0x40023840u, 0u, 0},
    {"PWR_CR1", 0x40007000u, 0x0000C000u, 0}, {"PWR_CSR1", 0x40007004u, 0u, 0},
    {"FLASH_ACR", 0x40023C00u, 0u, 0},         CM7_REGISTERS};
enum { CR, PLLCFGR, CFGR, APB1ENR, PWR_CR1, PWR_CSR1, FLASH_ACR, CCR, CCSIDR, CSSELR, ICIALLU, DCISW };
#elif defined(FAKE_H7)
#define CCSIDR_VALUE 0xF00FE019u /* 16 KB D-cache: 128 sets, 4 ways, 32-byte lines */
static fake_register regs[] = {
    {"RCC_CR", 0x58024400u, 0x00000025u, 0},        {"RCC_CFGR", 0x58024410u, 0u, 0},
    {"RCC_D1CFGR", 0x58024418u, 0u, 0},             {"RCC_D2CFGR", 0x5802441Cu, 0u, 0},
    {"RCC_D3CFGR", 0x58024420u, 0u, 0},             {"RCC_PLLCKSELR", 0x58024428u, 0x02020200u, 0},
    {"RCC_PLLCFGR", 0x5802442Cu, 0x01FF0000u, 0},   {"RCC_PLL1DIVR", 0x58024430u, 0x01010280u, 0},
    {"PWR_CSR1", 0x58024804u, 0x00004000u, 0},      {"PWR_CR3", 0x5802480Cu, 0x00000006u, 0},
    {"PWR_D3CR", 0x58024818u, 0x00004000u, 0},      {"FLASH_ACR", 0x52002000u, 0x00000037u, 0},
    CM7_REGISTERS};
enum { CR, CFGR, D1CFGR, D2CFGR, D3CFGR, PLLCKSELR, PLLCFGR, PLL1DIVR, PWR_CSR1, PWR_CR3, PWR_D3CR, FLASH_ACR,
       CCR, CCSIDR, CSSELR, ICIALLU, DCISW };
#elif defined(FAKE_NRF)
static fake_register regs[] = {{"CLOCK_TASKS_HFCLKSTART", 0x40000000u, 0u, 0},
                               {"CLOCK_EVENTS_HFCLKSTARTED", 0x40000100u, 0u, 0},
                               {"CLOCK_HFCLKSTAT", 0x4000040Cu, 0x00010000u, 0}};
enum { TASKS_HFCLKSTART, EVENTS_HFCLKSTARTED, HFCLKSTAT };
#else
#error "build with -DFAKE_F7, -DFAKE_H7 or -DFAKE_NRF"
#endif

#define NREGS (sizeof regs / sizeof regs[0])
#define V(i) (regs[i].value)
#define OLD(i) (regs[i].shadow)
#define FIELD(value, shift, mask) (((value) >> (shift)) & (mask))
#define CHANGED(i, mask) (((V(i) ^ OLD(i)) & (mask)) != 0u)

#if defined(FAKE_F7) || defined(FAKE_H7)
static uint64_t ahb_divider(uint32_t code) { /* HPRE / D1CPRE: 0xxx /1, 1000 /2 ... 1111 /512, no /32 */
  static const uint64_t div[8] = {2, 4, 8, 16, 64, 128, 256, 512};
  return code < 8u ? 1u : div[code - 8u];
}

static uint64_t apb_divider(uint32_t code) { return code < 4u ? 1u : 1u << (code - 3u); } /* 0xx /1, 100 /2.. */

/* The caches: enabled only after a complete invalidation. */
static void check_caches(void) {
  if (V(DCISW) != SENTINEL) { /* a DCISW write */
    uint32_t set = FIELD(V(DCISW), 5, 0x1FFu), way = FIELD(V(DCISW), 30, 3u);
    dcisw_seen[set][way] = 1;
    dcisw_writes++;
    V(DCISW) = SENTINEL;
  }
  if (V(ICIALLU) != SENTINEL) {
    iciallu_writes++;
    V(ICIALLU) = SENTINEL;
  }
  uint32_t sets = FIELD(CCSIDR_VALUE, 13, 0x7FFFu) + 1u, ways = FIELD(CCSIDR_VALUE, 3, 0x3FFu) + 1u;
  if (CHANGED(CCR, 1u << 16) && (V(CCR) & (1u << 16))) {
    for (uint32_t s = 0; s < sets; s++) {
      for (uint32_t w = 0; w < ways; w++) {
        if (!dcisw_seen[s][w]) {
          violation("D-cache enabled before set/way was invalidated", s, w);
          return;
        }
      }
    }
  }
  if (CHANGED(CCR, 1u << 17) && (V(CCR) & (1u << 17)) && iciallu_writes == 0u) {
    violation("I-cache enabled before ICIALLU", V(CCR), 0);
  }
}
#endif

#ifdef FAKE_F7
#define HSE_HZ (25 * MHZ)
static void play_hardware(void) {
  int hseon = (V(CR) >> 16) & 1u, pllon = (V(CR) >> 24) & 1u, pll_from_hse = (V(PLLCFGR) >> 22) & 1u;
  int hserdy = hseon && !fault("hse");
  int pllrdy = pllon && !fault("pll") && (!pll_from_hse || hserdy);
  V(CR) = (V(CR) & ~((1u << 17) | (1u << 25))) | ((uint32_t)hserdy << 17) | ((uint32_t)pllrdy << 25);
  int oden = (V(PWR_CR1) >> 16) & 1u, odswen = (V(PWR_CR1) >> 17) & 1u;
  int odrdy = oden && !fault("overdrive"), odswrdy = odswen && odrdy;
  V(PWR_CSR1) = ((uint32_t)odrdy << 16) | ((uint32_t)odswrdy << 17);
  uint32_t sw = V(CFGR) & 3u, sws = FIELD(V(CFGR), 2, 3u);
  if (!fault("switch") && !(sw == 2u && !pllrdy) && !(sw == 1u && !hserdy)) {
    sws = sw;
  }
  V(CFGR) = (V(CFGR) & ~(3u << 2)) | (sws << 2);
}

static void check_rules(void) {
  if ((CHANGED(PWR_CR1, ~0u) || CHANGED(PWR_CSR1, ~0u)) && !(V(APB1ENR) & (1u << 28))) {
    violation("PWR written with its clock off (APB1ENR.PWREN)", V(PWR_CR1), V(APB1ENR));
  }
  if (CHANGED(PLLCFGR, ~0u) && (OLD(CR) & (1u << 24))) {
    violation("RCC_PLLCFGR changed while the PLL is on", OLD(PLLCFGR), V(PLLCFGR));
  }
  if (CHANGED(PWR_CR1, 3u << 14) && (OLD(CR) & (1u << 24))) {
    violation("VOS changed while the PLL is on", OLD(PWR_CR1), V(PWR_CR1));
  }
  if (CHANGED(CR, 1u << 18) && (OLD(CR) & (1u << 16))) {
    violation("HSEBYP changed while HSE is on", OLD(CR), V(CR));
  }
  if (CHANGED(PWR_CR1, 1u << 17) && (V(PWR_CR1) & (1u << 17)) && !(OLD(PWR_CSR1) & (1u << 16))) {
    violation("ODSWEN set before ODRDY", V(PWR_CR1), OLD(PWR_CSR1));
  }
  uint32_t p = V(PLLCFGR), sws = FIELD(V(CFGR), 2, 3u);
  uint64_t ref = (p & (1u << 22)) ? HSE_HZ : 16 * MHZ, m = p & 0x3Fu, n = FIELD(p, 6, 0x1FFu);
  uint64_t sysclk = sws == 0u ? 16 * MHZ : sws == 1u ? HSE_HZ : ref * n / m / (2u * (FIELD(p, 16, 3u) + 1u));
  uint64_t hclk = sysclk / ahb_divider(FIELD(V(CFGR), 4, 0xFu));
  uint64_t pclk1 = hclk / apb_divider(FIELD(V(CFGR), 10, 7u)), pclk2 = hclk / apb_divider(FIELD(V(CFGR), 13, 7u));
  int od = (V(PWR_CSR1) >> 17) & 1u;
  if (sysclk > (od ? 216 : 180) * MHZ || pclk1 > (od ? 54 : 45) * MHZ || pclk2 > (od ? 108 : 90) * MHZ) {
    violation("clock above the chip's limit (SYSCLK, PCLK1 or PCLK2)", (uint32_t)(sysclk / 1000u),
              (uint32_t)od);
  }
  uint64_t need = (hclk + 30 * MHZ - 1) / (30 * MHZ) - 1u;
  if ((V(FLASH_ACR) & 0xFu) < need) {
    violation("too few flash wait states for HCLK (kHz, LATENCY)", (uint32_t)(hclk / 1000u), V(FLASH_ACR));
  }
  check_caches();
}
#endif

#ifdef FAKE_H7
#define HSE_HZ (8 * MHZ)
static void play_hardware(void) {
  int hseon = (V(CR) >> 16) & 1u, pllon = (V(CR) >> 24) & 1u, src = V(PLLCKSELR) & 3u;
  int hserdy = hseon && !fault("hse");
  int pllrdy = pllon && !fault("pll") && (src != 2u || hserdy);
  V(CR) = (V(CR) & ~((1u << 17) | (1u << 25))) | ((uint32_t)hserdy << 17) | ((uint32_t)pllrdy << 25);
  int supply_locked = !(V(PWR_CR3) & (1u << 2));
  V(PWR_CSR1) = (V(PWR_CSR1) & ~(1u << 13)) | ((uint32_t)supply_locked << 13);
  V(PWR_D3CR) = (V(PWR_D3CR) & ~(1u << 13)) | ((uint32_t)(supply_locked && !fault("vos")) << 13);
  uint32_t sw = V(CFGR) & 7u, sws = FIELD(V(CFGR), 3, 7u);
  if (!fault("switch") && !(sw == 3u && !pllrdy) && !(sw == 2u && !hserdy)) {
    sws = sw;
  }
  V(CFGR) = (V(CFGR) & ~(7u << 3)) | (sws << 3);
}

static void check_rules(void) {
  if ((CHANGED(PLLCKSELR, 0x3F3u) || CHANGED(PLLCFGR, 0x7000Fu) || CHANGED(PLL1DIVR, 0xFFFFu)) &&
      (OLD(CR) & (1u << 24))) {
    violation("PLL1 settings changed while PLL1 is on", V(PLLCFGR), V(PLL1DIVR));
  }
  if (CHANGED(PWR_D3CR, 3u << 14) && (V(PWR_CR3) & (1u << 2))) {
    violation("VOS changed before the supply configuration (PWR_CR3 SCUEN still set)", V(PWR_D3CR), V(PWR_CR3));
  }
  if (CHANGED(PWR_CR3, 7u) && (V(PWR_CR3) & 7u) != 2u) {
    violation("supply is not LDO with bypass off", V(PWR_CR3), 0);
  }
  if (CHANGED(CR, 1u << 18) && (OLD(CR) & (1u << 16))) {
    violation("HSEBYP changed while HSE is on", OLD(CR), V(CR));
  }
  uint32_t divm = FIELD(V(PLLCKSELR), 4, 0x3Fu), src = V(PLLCKSELR) & 3u;
  uint64_t ref = src == 2u ? HSE_HZ : 64 * MHZ, in = divm ? ref / divm : 0u;
  uint64_t vco = in * (FIELD(V(PLL1DIVR), 0, 0x1FFu) + 1u), p = FIELD(V(PLL1DIVR), 9, 0x7Fu) + 1u;
  if (CHANGED(CR, 1u << 24) && (V(CR) & (1u << 24))) { /* PLL1 turned on: its settings must fit its ranges */
    uint32_t rge = FIELD(V(PLLCFGR), 2, 3u), medium = FIELD(V(PLLCFGR), 1, 1u);
    uint64_t lo[4] = {1, 2, 4, 8}, hi[4] = {2, 4, 8, 16};
    if (in < lo[rge] * MHZ || in > hi[rge] * MHZ || medium != (rge == 0u)) {
      violation("PLL1RGE / VCOSEL do not fit the PLL1 input (Hz)", (uint32_t)in, V(PLLCFGR));
    }
    if (vco < (medium ? 150 : 192) * MHZ || vco > (medium ? 420 : 836) * MHZ || (p != 1u && p % 2u)) {
      violation("PLL1 VCO out of range or odd DIVP1 (kHz)", (uint32_t)(vco / 1000u), (uint32_t)p);
    }
    if (!(V(PLLCFGR) & (1u << 16))) {
      violation("PLL1 started without its P output (DIVP1EN)", V(PLLCFGR), 0);
    }
  }
  uint32_t sws = FIELD(V(CFGR), 3, 7u), vos_code = FIELD(V(PWR_D3CR), 14, 3u);
  uint64_t sysclk = sws == 0u ? 64 * MHZ : sws == 2u ? HSE_HZ : sws == 3u ? vco / p : 0u;
  uint64_t core = sysclk / ahb_divider(FIELD(V(D1CFGR), 8, 0xFu)), hclk = core / ahb_divider(V(D1CFGR) & 0xFu);
  uint64_t apb[4] = {hclk / apb_divider(FIELD(V(D2CFGR), 4, 7u)), hclk / apb_divider(FIELD(V(D2CFGR), 8, 7u)),
                     hclk / apb_divider(FIELD(V(D1CFGR), 4, 7u)), hclk / apb_divider(FIELD(V(D3CFGR), 4, 7u))};
  /* ST's stm32h7xx_ll_utils.c: SYSCLK at most 400 / 300 / 200 MHz at VOS1 / 2 / 3, HCLK 200 MHz, PCLKx 100 MHz;
   * flash wait states by HCLK per scale (its table of RM0433's). VOS code 3 = VOS1, 2 = VOS2, 1 = VOS3. */
  static const uint64_t core_max[4] = {0, 200, 300, 400};
  static const uint64_t ws_top[4][5] = {{0}, {45, 90, 135, 180, 225}, {55, 110, 165, 220, 0}, {70, 140, 210, 0, 0}};
  if (vos_code == 0u) {
    violation("PWR_D3CR VOS 0 is reserved", V(PWR_D3CR), 0);
    return;
  }
  int too_fast = core > core_max[vos_code] * MHZ || hclk > 200 * MHZ;
  for (int i = 0; i < 4; i++) {
    too_fast |= apb[i] > 100 * MHZ;
  }
  if (too_fast) {
    violation("clock above the voltage scale's limit (core kHz, VOS code)", (uint32_t)(core / 1000u), vos_code);
  }
  uint32_t need = 0;
  while (need < 5u && ws_top[vos_code][need] && hclk > ws_top[vos_code][need] * MHZ) {
    need++;
  }
  if ((V(FLASH_ACR) & 0xFu) < need) {
    violation("too few flash wait states for the AXI clock (kHz, ACR)", (uint32_t)(hclk / 1000u), V(FLASH_ACR));
  }
  check_caches();
}
#endif

#ifdef FAKE_NRF
static void play_hardware(void) {
  if (V(TASKS_HFCLKSTART) == 1u) { /* the task triggered: the crystal starts */
    V(TASKS_HFCLKSTART) = 0u;
    if (!fault("xtal")) {
      V(EVENTS_HFCLKSTARTED) = 1u;
      V(HFCLKSTAT) = 0x00010001u;
    }
  }
}

static void check_rules(void) {}
#endif

static void step(void) {
  check_rules();
  play_hardware();
  for (size_t i = 0; i < NREGS; i++) {
    regs[i].shadow = regs[i].value;
  }
}

static volatile uint32_t *fake_reg(uint32_t address) {
  step(); /* the previous access took effect: check it, then let the hardware react */
  for (size_t i = 0; i < NREGS; i++) {
    if (regs[i].address == address) {
      return &regs[i].value;
    }
  }
  violation("access to an unknown register", address, 0);
  static uint32_t nowhere;
  return &nowhere;
}

static unsigned barriers;
static __attribute__((unused)) void fake_barrier(void) { barriers++; } /* the nRF driver has no barriers */

#define EDGEVIT_CLOCK_REG(address) (*fake_reg(address))
#define EDGEVIT_CLOCK_BARRIER() fake_barrier()
#include CLOCK_DRIVER
#ifdef CACHE_DRIVER
#include CACHE_DRIVER
#else
void board_caches_enable(void) {}
#endif

int main(int argc, char **argv) {
  if (argc > 1) {
    scenario = argv[1];
  }
  for (size_t i = 0; i < NREGS; i++) {
    regs[i].shadow = regs[i].value;
  }
  printf("BEFORE_CORE_HZ=%u CONFIGURED=%d\n", (unsigned)board_clock_core_hz(), board_clock_configured());
  board_clock_init();
  step(); /* the last write */
  for (size_t i = 0; i < NREGS; i++) {
    printf("%s=0x%08X\n", regs[i].name, (unsigned)regs[i].value);
  }
  printf("CORE_HZ=%u\nCONFIGURED=%d\nDCISW_WRITES=%u\nICIALLU_WRITES=%u\nBARRIERS=%u\nVIOLATIONS=%d\n",
         (unsigned)board_clock_core_hz(), board_clock_configured(), (unsigned)dcisw_writes,
         (unsigned)iciallu_writes, barriers, violations);
  return 0;
}
