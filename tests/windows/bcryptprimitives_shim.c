/* Test-only stand-in for bcryptprimitives.dll under Wine 8 (Debian 12),
 * which lacks it. Rust's standard library (1.78+) imports ProcessPrng from
 * it on Windows 10+; real Windows and Wine 9+ have it. The shim is used only
 * by scripts/wine-smoke.sh, never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom, advapi32 */

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
