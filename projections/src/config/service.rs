//! Service registrations: `service-name` with either one `ip` and `port` or a list of
//! `servers`, and an optional `ttl` (a DCloud extension: seconds, or `30s`, `500ms`).

use dcloud_events::model::{Endpoint, ServiceRegistration};
use serde_json::{json, Map, Value};

use super::extjson::{check_meta, read_meta, write_meta};
use super::read::{field_path, item_path, list, scalar_text, show, text, Errors, Obj};
use super::rules::{check_host, check_name, check_port};
use super::size::parse_duration_ms;

pub(crate) const SERVICE_FIELDS: &[&str] = &[
    "_id",
    "service-name",
    "ip",
    "port",
    "servers",
    "ttl",
    "creation_time",
    "last_updation_time",
    "config_id",
];
const SERVER_FIELDS: &[&str] = &["ip", "port"];

pub(crate) fn read_service(
    errors: &mut Errors,
    v: &Value,
    path: &str,
) -> Option<ServiceRegistration> {
    let obj = Obj::open(errors, v, path, SERVICE_FIELDS)?;
    let name = obj
        .require(errors, "service-name", "a name such as dfs-server")
        .and_then(|v| {
            let path = obj.path("service-name");
            let name = text(errors, v, &path, "a string")?;
            errors.check(&path, check_name(name));
            Some(name.to_owned())
        });
    let single = obj.get("servers").is_none();
    let mut endpoints = Vec::new();
    match obj.get("servers") {
        Some(_) if obj.get("ip").is_some() || obj.get("port").is_some() => {
            let key = if obj.get("ip").is_some() {
                "ip"
            } else {
                "port"
            };
            errors.push(
                &obj.path(key),
                "give either ip and port, or servers, not both",
            );
        }
        Some(servers) => {
            let path = obj.path("servers");
            let items = list(errors, servers, &path, "a list of {ip, port}").unwrap_or_default();
            if items.is_empty() && servers.is_array() {
                errors.push(&path, "must not be empty; expected a list of {ip, port}");
            }
            for (i, item) in items.iter().enumerate() {
                if let Some(server) = Obj::open(errors, item, &item_path(&path, i), SERVER_FIELDS) {
                    endpoints.extend(read_endpoint(errors, &server));
                }
            }
        }
        None => endpoints.extend(read_endpoint(errors, &obj)),
    }
    let ttl_ms = obj.get("ttl").and_then(|v| {
        let ttl = scalar_text(v)
            .and_then(|s| parse_duration_ms(&s).ok())
            .filter(|ms| *ms > 0);
        if ttl.is_none() {
            let message = format!(
                "{} is not a duration; use seconds such as 30, or 30s, 5m, 500ms",
                show(v)
            );
            errors.push(&obj.path("ttl"), message);
        }
        ttl
    });
    let meta = read_meta(errors, &obj);
    Some(ServiceRegistration {
        name: name.unwrap_or_default(),
        endpoints,
        ttl_ms,
        single,
        meta,
    })
}

/// `ip` and `port` of an object (the service itself, or one of its `servers`).
fn read_endpoint(errors: &mut Errors, obj: &Obj<'_>) -> Option<Endpoint> {
    let ip = obj
        .require(errors, "ip", "an address such as 127.0.0.1")
        .and_then(|v| {
            let path = obj.path("ip");
            let ip = text(errors, v, &path, "a string")?;
            errors.check(&path, check_host(ip));
            Some(ip.to_owned())
        });
    let port = obj
        .require(errors, "port", "a port such as 8003")
        .and_then(|v| {
            let port = scalar_text(v)
                .and_then(|s| s.trim().parse::<u16>().ok())
                .filter(|p| *p != 0);
            if port.is_none() {
                let message = format!("{} is not a port; use a number from 1 to 65535", show(v));
                errors.push(&obj.path("port"), message);
            }
            port
        });
    Some(Endpoint {
        ip: ip?,
        port: port?,
    })
}

/// Problems with a registration already built.
pub(crate) fn check_service(errors: &mut Errors, service: &ServiceRegistration) {
    errors.check("service-name", check_name(&service.name));
    if service.single {
        if service.endpoints.len() != 1 {
            errors.push("ip", "a single-address service has exactly one ip and port");
        }
        for endpoint in &service.endpoints {
            errors.check("ip", check_host(&endpoint.ip));
            errors.check("port", check_port(endpoint.port));
        }
    } else {
        if service.endpoints.is_empty() {
            errors.push(
                "servers",
                "must not be empty; expected a list of {ip, port}",
            );
        }
        for (i, endpoint) in service.endpoints.iter().enumerate() {
            let path = item_path("servers", i);
            errors.check(&field_path(&path, "ip"), check_host(&endpoint.ip));
            errors.check(&field_path(&path, "port"), check_port(endpoint.port));
        }
    }
    if service.ttl_ms == Some(0) {
        errors.push("ttl", "must be more than 0");
    }
    check_meta(errors, &service.meta);
}

/// A registration in the original format (`ttl` in seconds when whole).
pub(crate) fn write_service(service: &ServiceRegistration) -> Value {
    let mut out = Map::new();
    out.insert("service-name".into(), json!(service.name));
    match (service.single, service.endpoints.as_slice()) {
        (true, [endpoint]) => {
            out.insert("ip".into(), json!(endpoint.ip));
            out.insert("port".into(), json!(endpoint.port));
        }
        (_, endpoints) => {
            let servers: Vec<Value> = endpoints
                .iter()
                .map(|e| json!({ "ip": e.ip, "port": e.port }))
                .collect();
            out.insert("servers".into(), Value::Array(servers));
        }
    }
    if let Some(ms) = service.ttl_ms {
        let ttl = if ms % 1000 == 0 {
            json!(ms / 1000)
        } else {
            json!(format!("{ms}ms"))
        };
        out.insert("ttl".into(), ttl);
    }
    write_meta(&mut out, &service.meta);
    Value::Object(out)
}
