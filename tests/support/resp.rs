//! The client side of RESP as a fake peer reads it: enough to answer the commands a Redis
//! client sends (`HELLO`, `CLIENT SETINFO`, `INFO`, `REPLCONF`, `SYNC`) with whatever a test
//! scripts, including replies no real Redis would give.

/// Splits complete RESP command arrays off the front of `buffer`, returning each command's
/// name (upper case); an incomplete tail stays in `buffer`.
pub fn commands(buffer: &mut Vec<u8>) -> Vec<String> {
    fn line(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = bytes.get(at..)?.windows(2).position(|w| w == b"\r\n")? + at;
        Some((&bytes[at..end], end + 2))
    }
    let number = |text: &[u8]| -> usize {
        std::str::from_utf8(text.get(1..).unwrap_or_default())
            .ok()
            .and_then(|t| t.parse().ok())
            .expect("a RESP length")
    };
    let mut names = Vec::new();
    while let Some((header, mut at)) = line(buffer, 0) {
        let count = number(header);
        let mut name = None;
        let mut complete = true;
        for _ in 0..count {
            let Some((len, next)) = line(buffer, at) else {
                complete = false;
                break;
            };
            let len = number(len);
            if buffer.len() < next + len + 2 {
                complete = false;
                break;
            }
            name.get_or_insert_with(|| {
                String::from_utf8_lossy(&buffer[next..next + len]).to_uppercase()
            });
            at = next + len + 2;
        }
        if !complete {
            break;
        }
        names.push(name.unwrap_or_default());
        buffer.drain(..at);
    }
    names
}
