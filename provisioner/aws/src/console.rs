//! Host keys from an instance's console output. cloud-init prints the machine's SSH host public keys
//! between `-----BEGIN SSH HOST KEY KEYS-----` and `-----END SSH HOST KEY KEYS-----` on the serial
//! console at first boot, and EC2 returns that console through `GetConsoleOutput`, an authenticated
//! channel that does not pass through the machine's network. Keys read there can be pinned before the
//! first SSH connection instead of trusting whatever answers first.

use crate::{AwsError, Ec2};

const BEGIN: &str = "-----BEGIN SSH HOST KEY KEYS-----";
const END: &str = "-----END SSH HOST KEY KEYS-----";

/// Key types accepted from the console: what OpenSSH generates as host keys. A line of another shape
/// is console noise, not a key.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
];

/// The host public keys in console `text`, each as `TYPE BASE64` (the comment dropped), in the order
/// printed. Only a complete block counts: a console still being written may end inside one, and half
/// a list of keys would refuse a machine whose key is in the other half. When a machine was rebooted
/// and printed the block twice, the last complete block wins.
pub fn host_keys_from_console(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in text.lines() {
        // Serial consoles end lines with \r and cloud-init may prefix them (`ci-info: `, timestamps).
        let line = line.trim_end_matches('\r');
        if line.ends_with(BEGIN) {
            current = Some(Vec::new());
        } else if line.ends_with(END) {
            if let Some(keys) = current.take() {
                found = keys;
            }
        } else if let Some(keys) = current.as_mut() {
            let mut fields = line.split_whitespace();
            if let (Some(kind), Some(blob)) = (fields.next(), fields.next())
                && KEY_TYPES.contains(&kind)
                && aws_smithy_types::base64::decode(blob).is_ok_and(|b| !b.is_empty())
            {
                keys.push(format!("{kind} {blob}"));
            }
        }
    }
    found
}

impl Ec2 {
    /// The SSH host keys instance `id` printed on its console (see [`host_keys_from_console`]); empty
    /// when the console has none yet (EC2 makes the output available some time after boot) or the
    /// image does not print them.
    pub async fn console_host_keys(&self, id: &str) -> Result<Vec<String>, AwsError> {
        let out = self
            .client
            .get_console_output()
            .instance_id(id)
            .latest(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetConsoleOutput", id, e))?;
        let Some(encoded) = out.output() else {
            return Ok(Vec::new());
        };
        let bytes = aws_smithy_types::base64::decode(encoded).map_err(|e| {
            AwsError::other(
                "GetConsoleOutput",
                id,
                format!("the console output is not base64: {e}"),
            )
        })?;
        Ok(host_keys_from_console(&String::from_utf8_lossy(&bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an Ubuntu/Debian cloud image prints (trimmed), with serial-console line endings.
    const CONSOLE: &str = "[   12.3] cloud-init[612]: Cloud-init v. 23.1 finished\r\n\
-----BEGIN SSH HOST KEY FINGERPRINTS-----\r\n\
256 SHA256:8e6mVXtHjqrVVmbnIabVf/7oJ4kPiTQ2+/5hNW43dqc root@ip-10-0-1-5 (ECDSA)\r\n\
-----END SSH HOST KEY FINGERPRINTS-----\r\n\
-----BEGIN SSH HOST KEY KEYS-----\r\n\
ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY= root@ip-10-0-1-5\r\n\
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl root@ip-10-0-1-5\r\n\
-----END SSH HOST KEY KEYS-----\r\n\
[   13.0] cloud-init[612]: done\r\n";

    #[test]
    fn the_keys_between_the_markers_are_read_without_their_comments() {
        assert_eq!(
            host_keys_from_console(CONSOLE),
            vec![
                "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY=".to_string(),
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn a_console_without_the_block_or_ending_inside_it_gives_no_keys() {
        assert!(
            host_keys_from_console("Linux version 6.1\nBIOS-provided physical RAM map:\n")
                .is_empty()
        );
        let cut = &CONSOLE[..CONSOLE.find("ssh-ed25519").expect("fixture has the key")];
        assert!(
            host_keys_from_console(cut).is_empty(),
            "half a block is not a key list"
        );
    }

    #[test]
    fn noise_inside_the_block_is_not_taken_for_a_key() {
        let text =
            format!("{BEGIN}\nhello world\nssh-ed25519 not*base64\nssh-ed25519 AAAA\n{END}\n");
        assert_eq!(
            host_keys_from_console(&text),
            vec!["ssh-ed25519 AAAA".to_string()]
        );
    }

    #[test]
    fn after_a_reboot_the_last_complete_block_wins() {
        let text = format!(
            "{BEGIN}\nssh-ed25519 AAAA old\n{END}\n{BEGIN}\nssh-ed25519 AAAB new\n{END}\n{BEGIN}\nssh-rsa AAAC\n"
        );
        assert_eq!(
            host_keys_from_console(&text),
            vec!["ssh-ed25519 AAAB".to_string()]
        );
    }
}
