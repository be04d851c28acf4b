//! Rendering: command lines, quoting, preflight checks, config, uninstall, strictness.

use super::*;

fn agent() -> InstallParams {
    InstallParams {
        master_url: Some("http://10.0.0.2:5050".into()),
        resources: Some("cpus:4;mem:8192".into()),
        attributes: Some("rack:r1;zone:a".into()),
        ..InstallParams::new(
            "prod",
            "agents-2",
            Role::PublicAgent,
            "0.0.0.0:5051",
            1_800_000_000,
        )
    }
}

#[test]
fn agent_command_line_carries_master_public_flag_resources_and_attributes() {
    let argv = agent().dccore_argv().expect("argv");
    assert_eq!(
        argv.join(" "),
        "/usr/local/bin/dccore agent --master http://10.0.0.2:5050 --listen 0.0.0.0:5051 \
         --work-dir /var/lib/dcform/public-agent --token-file /etc/dcform/public-agent.token --public \
         --resources cpus:4;mem:8192 --attributes rack:r1;zone:a \
         --config /etc/dcform/public-agent.json"
    );
}

#[test]
fn agent_command_line_carries_the_advertised_url_when_given() {
    let p = InstallParams {
        advertise_url: Some("http://10.0.0.3:5051".into()),
        ..agent()
    };
    let argv = p.dccore_argv().expect("argv");
    assert!(
        argv.join(" ")
            .ends_with("--attributes rack:r1;zone:a --advertise-url http://10.0.0.3:5051 --config /etc/dcform/public-agent.json"),
        "{argv:?}"
    );
    let r = render(&p).expect("render");
    assert!(
        r.unit.contains("--advertise-url http://10.0.0.3:5051"),
        "{}",
        r.unit
    );
}

#[test]
fn unit_and_supervise_line_quote_arguments_for_their_interpreters() {
    let r = render(&agent()).expect("render");
    assert!(
        r.unit.contains("--attributes \"rack:r1;zone:a\""),
        "{}",
        r.unit
    );
    assert!(r.install.contains(
        "setsid /usr/local/bin/dccore supervise --pid-file /run/dcform/public-agent.pid \
         --log-file /var/log/dcform/public-agent.log -- /usr/local/bin/dccore agent"
    ));
    assert!(r.install.contains("--attributes 'rack:r1;zone:a'"));
    assert_eq!(r.unit_name, "dcform-public-agent.service");
}

#[test]
fn preflight_checks_arch_disk_ports_and_clock() {
    let mut p = agent();
    p.extra_ports = vec![8080, 5051];
    let r = render(&p).expect("render");
    for needle in [
        "-ge 1048576",
        "port_listening 5051",
        "port_listening 8080",
        "now - 1800000000",
        "-le 300",
    ] {
        assert!(r.preflight.contains(needle), "missing {needle}");
    }
    assert!(
        r.preflight
            .contains(&format!("[ \"$arch\" = {} ]", p.binary_arch))
    );
    assert_eq!(r.preflight.matches("port_listening 5051").count(), 1);
}

#[test]
fn config_file_is_the_given_json_and_dccore_is_pointed_at_it() {
    let mut m = InstallParams::new("c", "masters-0", Role::Master, "0.0.0.0:5050", 0);
    m.config_json = "{\"offer_timeout_secs\": 5.0}\n".into();
    let r = render(&m).expect("render");
    assert_eq!(r.config, m.config_json);
    assert_eq!(r.paths.config_file, "/etc/dcform/master.json");
    assert!(m.dccore_argv().expect("argv").ends_with(&[
        "--config".to_string(),
        "/etc/dcform/master.json".to_string()
    ]));
    assert!(!r.install.contains("--master"));
}

#[test]
fn agent_without_master_url_is_rejected() {
    let mut p = agent();
    p.master_url = None;
    assert!(matches!(render(&p), Err(TemplateError::Invalid(_))));
}

#[test]
fn undefined_variables_are_errors_not_empty_strings() {
    let env = env();
    let err = render_one(&env, "t", "{{ nope }}", &context! {}).expect_err("strict");
    assert!(
        matches!(err, TemplateError::Render { template: "t", .. }),
        "{err}"
    );
}

#[test]
fn rendering_errors_never_contain_context_values() {
    let env = env();
    let secretish = "tok-SECRET-123";
    let err = render_one(
        &env,
        "t",
        "{{ a }}{{ b.c.d }}",
        &context! { a => secretish },
    )
    .expect_err("undefined b");
    assert!(!err.to_string().contains(secretish), "{err}");
}

#[test]
fn uninstall_removes_role_files_then_shared_ones_with_the_last_role() {
    let r = render(&agent()).expect("render");
    for p in [
        "/etc/dcform/public-agent.json",
        "/var/lib/dcform/public-agent",
        "/etc/systemd/system/dcform-public-agent.service",
        "/usr/local/bin/dccore",
        "/etc/dcform",
        "/var/lib/dcform",
        "/var/log/dcform",
        "/run/dcform",
    ] {
        assert!(
            r.uninstall.contains(&format!("rm_path {p}")),
            "uninstall misses {p}"
        );
    }
}
