//! Arbitrary bytes as a safetensors file: parsing must fail cleanly, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = candle_core::safetensors::load_buffer(data, &candle_core::Device::Cpu);
});
