//! The behavioural simulation behind the generator: one device, one day.
//!
//! A device alternates between indoor and outdoor segments whose lengths
//! depend on the local hour (long indoor stays at night). Outdoors it moves
//! in a mode (walking, running, cycling, driving or standing); indoors it
//! stays in a place with its own Wi-Fi, access-point density, floor and
//! signal penetration loss. Every sample is drawn from the current state with
//! overlapping noise, so no single column decides the class, while the
//! persistence of the state and of slowly varying quantities (shadow fading,
//! stale GPS fixes, the serving cell, the Wi-Fi connection) makes neighbouring
//! samples informative about each other.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};

/// Seconds in a day.
const DAY_S: f64 = 86_400.0;
/// Local time offset of the simulated days (CET; every simulated day lies in
/// March 2026, before the switch to daylight saving time).
pub const LOCAL_OFFSET_S: i64 = 3_600;
/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_320.0;

/// Phone models: manufacturer, model and the model's RSRP offset in dB.
pub const MODELS: &[(&str, &str, f64)] = &[
    ("Samsung", "Galaxy S23", 2.5),
    ("Samsung", "Galaxy A54", 0.0),
    ("Google", "Pixel 8", 1.5),
    ("Xiaomi", "Redmi Note 12", -3.5),
    ("Motorola", "moto g54", -5.0),
    ("OnePlus", "11", 1.0),
    ("Nokia", "G21", -6.0),
    ("Fairphone", "5", -2.0),
    ("Sony", "Xperia 10 V", -1.0),
    ("Samsung", "Galaxy A14", -4.0),
    // Only in lakes generated with `--shift manufacturer` (see [`Shift`]).
    ("Nothing", "Phone (3a)", -1.5),
];

/// Phone models drawn without a shift (the first entries of [`MODELS`]).
pub const BASE_MODELS: usize = 10;

/// A known distribution shift of the raw (inference) population, for
/// testing drift detection (`sluice datagen --shift`). The training
/// population never shifts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shift {
    /// Weaker signal: every RSRP (and the RSSI derived from it) 10 dB lower.
    Rsrp,
    /// Half the devices are a phone of a new manufacturer (`Nothing`).
    Manufacturer,
    /// Four times as many samples per hour at night (22:00-06:00 local),
    /// when devices are mostly indoors.
    Night,
}

impl Shift {
    /// Every shift, by its name on the command line.
    pub const ALL: [(&'static str, Shift); 3] = [
        ("rsrp", Shift::Rsrp),
        ("manufacturer", Shift::Manufacturer),
        ("night", Shift::Night),
    ];

    /// Applies the shift to a raw device's attributes.
    pub fn apply(self, spec: &mut DeviceSpec) {
        match self {
            Shift::Rsrp => spec.rsrp_shift_db = -10.0,
            Shift::Manufacturer => {
                if mix(spec.device_id as u64 ^ 0x4e45_5750).is_multiple_of(2) {
                    spec.model = BASE_MODELS;
                    spec.reports_rssi = true;
                }
            }
            Shift::Night => spec.night_rate = 4.0,
        }
    }
}

impl std::str::FromStr for Shift {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Shift::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = Shift::ALL.iter().map(|(n, _)| *n).collect();
                format!("unknown shift `{s}`; expected one of {}", names.join(", "))
            })
    }
}

/// Android versions devices run.
pub const OS_VERSIONS: &[&str] = &["Android 12", "Android 13", "Android 14", "Android 15"];

/// Cities devices live around (latitude, longitude).
const CITIES: &[(f64, f64)] = &[
    (52.520, 13.405),
    (48.137, 11.575),
    (53.551, 9.993),
    (50.938, 6.960),
    (50.110, 8.682),
    (51.339, 12.373),
];

/// A device's fixed attributes.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// Device id written to the tables.
    pub device_id: i64,
    /// Index into [`MODELS`].
    pub model: usize,
    /// Index into [`OS_VERSIONS`].
    pub os: usize,
    /// First sample id of the device.
    pub first_sample_id: i64,
    /// Number of samples to produce.
    pub samples: usize,
    /// Trace start (µs since the epoch, UTC).
    pub start_us: i64,
    /// Home latitude.
    pub home_lat: f64,
    /// Home longitude.
    pub home_lon: f64,
    /// Urbanity 0.3..1.7: scales the visible access points.
    pub urbanity: f64,
    /// Ground altitude in metres.
    pub ground_alt: f64,
    /// Whether the model reports RSSI at all.
    pub reports_rssi: bool,
    /// Added to every RSRP in dB (0 unless shifted).
    pub rsrp_shift_db: f64,
    /// Sampling rate at night relative to the day (1 unless shifted).
    pub night_rate: f64,
}

/// A GPS fix as reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    /// Altitude in metres.
    pub alt: Option<f64>,
    /// Horizontal accuracy in metres.
    pub acc: Option<f64>,
    /// Speed in m/s.
    pub speed: Option<f64>,
    /// `gps`, `network` or `fused`.
    pub provider: &'static str,
    /// Fix time (µs).
    pub fix_ts: i64,
}

/// Radio measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Radio {
    /// RSRP in dBm.
    pub rsrp: Option<f64>,
    /// RSRQ in dB.
    pub rsrq: Option<f64>,
    /// SINR in dB.
    pub sinr: Option<f64>,
    /// RSSI in dBm.
    pub rssi: Option<f64>,
}

/// Device environment flags.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Env {
    /// Connected to a Wi-Fi network.
    pub wifi: bool,
    /// RSSI of the connected Wi-Fi.
    pub wifi_rssi: Option<f64>,
    /// Visible access points.
    pub visible: i32,
    /// Charging.
    pub charging: bool,
    /// Screen on.
    pub screen: bool,
}

/// One simulated sample with everything every table needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Sample id.
    pub sample_id: i64,
    /// Device id.
    pub device_id: i64,
    /// Sample time (µs, UTC).
    pub ts: i64,
    /// Serving cell key (None: no service).
    pub cell_key: Option<i64>,
    /// Network type string.
    pub network_type: &'static str,
    /// The `locations` row, if present.
    pub fix: Option<Fix>,
    /// The `radio` row, if present.
    pub radio: Option<Radio>,
    /// The `activity` row, if present.
    pub activity: Option<(&'static str, i32)>,
    /// The `environment` row, if present.
    pub env: Option<Env>,
    /// The true state.
    pub indoor_true: bool,
    /// The delivered label (true state with label noise).
    pub indoor_label: bool,
}

/// Cell attributes derived from a cell key (the `cells` table is a pure
/// function of the key, so training rows and raw tables agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellAttrs {
    /// Mobile country code.
    pub mcc: i32,
    /// Mobile network code.
    pub mnc: i32,
    /// Tracking area code.
    pub tac: i32,
    /// Cell id.
    pub cell_id: i64,
    /// Physical cell id 0..503.
    pub pci: i32,
    /// Channel number.
    pub earfcn: i32,
}

/// SplitMix64 finaliser: a good 64-bit mixer for seeds and hashes.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The attributes of cell `key` (1-based).
pub fn cell_attrs(key: i64) -> CellAttrs {
    let h = mix(key as u64 ^ 0xCE11);
    const EARFCN: &[i32] = &[1300, 1444, 3050, 6300, 100, 1850, 9820, 525];
    CellAttrs {
        mcc: 262,
        mnc: [1, 2, 3][(h % 3) as usize],
        tac: 10_000 + (key / 40) as i32 % 50_000,
        cell_id: 20_000_000 + key * 7 + (h >> 8) as i64 % 7,
        pci: ((h >> 16) % 504) as i32,
        earfcn: EARFCN[((h >> 32) % EARFCN.len() as u64) as usize],
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}

fn lognormal(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

fn round_to(x: f64, step: f64) -> f64 {
    (x / step).round() * step
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, f64)]) -> T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut u = rng.random::<f64>() * total;
    for (item, w) in items {
        if u < *w {
            return *item;
        }
        u -= w;
    }
    items[items.len() - 1].0
}

/// Draws a device's fixed attributes.
pub fn device_spec(
    rng: &mut ChaCha8Rng,
    device_id: i64,
    first_sample_id: i64,
    samples: usize,
) -> DeviceSpec {
    let (clat, clon) = CITIES[rng.random_range(0..CITIES.len())];
    // Days between Mon 2026-03-02 and Sun 2026-03-22, local midnight = 23:00Z the day before.
    let day = rng.random_range(0..21i64);
    let base_us = 1_772_406_000_000_000i64; // 2026-03-01T23:00:00Z = 2026-03-02 00:00 CET
    let start_us = base_us + day * 86_400_000_000 + rng.random_range(0..3_600_000_000i64);
    let model = rng.random_range(0..BASE_MODELS);
    DeviceSpec {
        device_id,
        model,
        os: rng.random_range(0..OS_VERSIONS.len()),
        first_sample_id,
        samples,
        start_us,
        home_lat: clat + 0.08 * normal(rng),
        home_lon: clon + 0.12 * normal(rng),
        urbanity: rng.random_range(0.3..1.7),
        ground_alt: (120.0 + 80.0 * normal(rng)).max(0.0),
        reports_rssi: model % 4 != 3,
        rsrp_shift_db: 0.0,
        night_rate: 1.0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Walk,
    Run,
    Bike,
    Vehicle,
    Stand,
}

struct Place {
    wifi_available: bool,
    connected: bool,
    ap_mean: f64,
    penetration_db: f64,
    floor: f64,
    gps_factor: f64,
    charging: bool,
}

fn local_hour(ts_us: i64) -> f64 {
    let local_s = ts_us.div_euclid(1_000_000) + LOCAL_OFFSET_S;
    (local_s.rem_euclid(86_400)) as f64 / 3_600.0
}

fn is_night(hour: f64) -> bool {
    !(6.0..22.0).contains(&hour)
}

/// Simulates `spec`'s day and hands every sample to `emit` in time order.
/// `cell_pool` is the number of cells in the network (keys 1..=cell_pool);
/// `label_noise` is the probability a delivered label is flipped.
pub fn simulate_device(
    spec: &DeviceSpec,
    rng: &mut ChaCha8Rng,
    cell_pool: u64,
    label_noise: f64,
    mut emit: impl FnMut(&Sample),
) {
    let model_offset = MODELS[spec.model].2;
    let cos_lat = spec.home_lat.to_radians().cos();
    let n = spec.samples.max(1);
    // Lognormal intervals (sigma 1) with a mean that spreads the samples over a day.
    let median_dt = (DAY_S / n as f64) / (0.5f64).exp();

    let mut ts = spec.start_us;
    let mut indoor = rng.random_bool(0.9);
    let mut segment_end = ts;
    let mut mode = Mode::Stand;
    let mut place = new_place(rng, spec, local_hour(ts));
    let (mut x, mut y) = (0.0f64, 0.0f64);
    let mut heading = rng.random_range(0.0..std::f64::consts::TAU);
    let mut shadow = 0.0f64;
    let mut last_fix: Option<Fix> = None;
    let mut sector = rng.random_range(0..3u64);
    let mut outdoor_charging = false;
    let mut first = true;

    for i in 0..n {
        if i > 0 {
            let mut dt = lognormal(rng, median_dt, 1.0).clamp(1.0, 1_800.0);
            if spec.night_rate != 1.0 && is_night(local_hour(ts)) {
                dt = (dt / spec.night_rate).max(1.0);
            }
            ts += (dt * 1e6) as i64;
            // Move during the interval (outdoors only; indoors is a place).
            if !indoor {
                let v = mode_speed(rng, mode);
                heading += 0.35 * normal(rng);
                x += v * dt * heading.cos();
                y += v * dt * heading.sin();
            }
        }
        let hour = local_hour(ts);
        if ts >= segment_end {
            if !first {
                indoor = !indoor;
            }
            first = false;
            let night = is_night(hour);
            let minutes = if indoor {
                if night {
                    lognormal(rng, 180.0, 0.6)
                } else {
                    lognormal(rng, 20.0, 1.0)
                }
            } else if night {
                lognormal(rng, 6.0, 0.7)
            } else {
                lognormal(rng, 25.0, 0.9)
            };
            segment_end = ts + (minutes.max(2.0) * 60e6) as i64;
            if indoor {
                place = new_place(rng, spec, hour);
                // A short walk inside: the place is near where we were.
                x += 15.0 * normal(rng);
                y += 15.0 * normal(rng);
            } else {
                mode = pick(
                    rng,
                    &[
                        (Mode::Walk, 0.40),
                        (Mode::Vehicle, 0.28),
                        (Mode::Stand, 0.14),
                        (Mode::Bike, 0.12),
                        (Mode::Run, 0.06),
                    ],
                );
                outdoor_charging = mode == Mode::Vehicle && rng.random_bool(0.25);
            }
            sector = rng.random_range(0..3u64);
        }

        // Serving cell: a 500 m grid around the true position, three sectors.
        let lat_true = spec.home_lat + y / M_PER_DEG;
        let lon_true = spec.home_lon + x / (M_PER_DEG * cos_lat);
        let gx = (lon_true / 0.007).floor() as i64;
        let gy = (lat_true / 0.0045).floor() as i64;
        if rng.random_bool(0.05) {
            sector = rng.random_range(0..3u64);
        }
        let grid_hash = mix((gx as u64).wrapping_mul(0x1_0000_0001) ^ (gy as u64).rotate_left(29));
        let no_service = rng.random_bool(if indoor { 0.035 } else { 0.01 });
        let cell_key = (!no_service).then(|| (mix(grid_hash ^ sector) % cell_pool) as i64 + 1);
        let cell_base = -86.0 + 7.0 * ((grid_hash >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 2.0;

        // Radio: path loss of the cell + slow shadow fading + penetration.
        shadow = 0.85 * shadow + 0.53 * 3.5 * normal(rng);
        let penetration = if indoor {
            place.penetration_db
        } else if mode == Mode::Vehicle {
            6.0
        } else {
            0.0
        };
        let radio = if rng.random_bool(0.02) {
            None
        } else {
            let reported = cell_key.is_some();
            let rsrp = cell_base + shadow - penetration
                + model_offset
                + 4.0 * normal(rng)
                + spec.rsrp_shift_db;
            let rsrp = rsrp.clamp(-140.0, -44.0).round();
            let rsrq = (-9.0 - 0.25 * penetration + 2.5 * normal(rng)).clamp(-20.0, -3.0);
            let sinr = (14.0 - 0.45 * penetration + 5.5 * normal(rng)).clamp(-10.0, 30.0);
            let rssi = (rsrp + 28.0 + 3.0 * normal(rng)).round();
            Some(Radio {
                rsrp: (reported && !rng.random_bool(0.01)).then_some(rsrp),
                rsrq: reported.then_some(round_to(rsrq, 0.5)),
                sinr: reported.then_some(round_to(sinr, 0.1)),
                rssi: (reported && spec.reports_rssi).then_some(rssi),
            })
        };
        let network_type = if rng.random_bool(0.004) {
            pick(rng, &[("IWLAN", 2.0), ("LTE_CA", 1.0), ("NR_NSA", 1.0)])
        } else if cell_key.is_none() {
            if rng.random_bool(0.8) {
                "UNKNOWN"
            } else {
                "GSM"
            }
        } else if indoor {
            pick(
                rng,
                &[
                    ("LTE", 0.64),
                    ("NR", 0.18),
                    ("UMTS", 0.10),
                    ("GSM", 0.05),
                    ("UNKNOWN", 0.03),
                ],
            )
        } else {
            pick(
                rng,
                &[
                    ("LTE", 0.6),
                    ("NR", 0.28),
                    ("UMTS", 0.07),
                    ("GSM", 0.03),
                    ("UNKNOWN", 0.02),
                ],
            )
        };

        // Location: new or stale fix.
        let true_speed = if indoor { 0.0 } else { mode_speed(rng, mode) };
        let stale_p = if indoor {
            0.35 * place.gps_factor
        } else {
            0.07
        };
        let fix = match last_fix {
            Some(prev) if rng.random_bool(stale_p.min(0.8)) && ts - prev.fix_ts < 900_000_000 => {
                Some(prev)
            }
            _ => {
                let provider = if indoor {
                    pick(rng, &[("gps", 0.35), ("fused", 0.35), ("network", 0.30)])
                } else {
                    pick(rng, &[("gps", 0.70), ("fused", 0.20), ("network", 0.10)])
                };
                let acc = match provider {
                    "gps" if indoor => lognormal(rng, 14.0 * place.gps_factor, 0.6),
                    "gps" => lognormal(rng, 6.0, 0.6),
                    "fused" if indoor => lognormal(rng, 18.0 * place.gps_factor, 0.6),
                    "fused" => lognormal(rng, 9.0, 0.6),
                    _ => lognormal(rng, 70.0, 0.7),
                }
                .clamp(1.0, 3_000.0);
                let err = 0.6 * acc;
                // Indoors fixes are mostly old, but near a window they are
                // fresh; outdoors street canyons delay some fixes.
                let delay_s = if indoor && !rng.random_bool(0.35) {
                    rng.random::<f64>().powi(2) * 25.0 * place.gps_factor + 1.0
                } else if !indoor && rng.random_bool(0.2) {
                    rng.random_range(2.0..20.0)
                } else {
                    -1.5 * (1.0 - rng.random::<f64>()).ln()
                };
                let speed = if provider == "network" || rng.random_bool(0.05) {
                    None
                } else if indoor {
                    // GPS drift indoors, with occasional multipath jumps.
                    let drift = if rng.random_bool(0.15) {
                        lognormal(rng, 1.8, 0.6)
                    } else {
                        (1.1 * normal(rng)).abs()
                    };
                    Some(round_to(drift, 0.01))
                } else {
                    Some(round_to((true_speed + 1.0 * normal(rng)).max(0.0), 0.01))
                };
                let alt = (provider != "network").then(|| {
                    round_to(
                        spec.ground_alt
                            + if indoor { 3.0 * place.floor } else { 0.0 }
                            + 6.0 * normal(rng),
                        0.1,
                    )
                });
                Some(Fix {
                    lat: round_to(lat_true + err * normal(rng) / M_PER_DEG, 1e-7),
                    lon: round_to(lon_true + err * normal(rng) / (M_PER_DEG * cos_lat), 1e-7),
                    alt,
                    acc: (!rng.random_bool(0.02)).then_some(round_to(acc, 0.1)),
                    speed,
                    provider,
                    fix_ts: ts - (delay_s * 1e6) as i64,
                })
            }
        };
        last_fix = fix;
        let missing_loc = rng.random_bool(if indoor { 0.05 } else { 0.015 });
        let fix = if missing_loc { None } else { fix };

        // Activity recognition.
        let true_activity = if indoor {
            if rng.random_bool(0.12) {
                "WALKING"
            } else {
                "STILL"
            }
        } else {
            match mode {
                Mode::Walk => {
                    if rng.random_bool(0.5) {
                        "WALKING"
                    } else {
                        "ON_FOOT"
                    }
                }
                Mode::Run => "RUNNING",
                Mode::Bike => "ON_BICYCLE",
                Mode::Vehicle => "IN_VEHICLE",
                Mode::Stand => "STILL",
            }
        };
        let activity = if rng.random_bool(0.025) {
            None
        } else if rng.random_bool(0.003) {
            Some((
                if rng.random_bool(0.5) {
                    "IN_RAIL_VEHICLE"
                } else {
                    "IN_ROAD_VEHICLE"
                },
                rng.random_range(30..90),
            ))
        } else if rng.random_bool(0.62) {
            Some((
                true_activity,
                (72.0 + 15.0 * normal(rng)).clamp(0.0, 100.0) as i32,
            ))
        } else {
            let a = pick(
                rng,
                &[
                    ("STILL", 0.35),
                    ("UNKNOWN", 0.3),
                    ("TILTING", 0.15),
                    ("WALKING", 0.08),
                    ("ON_FOOT", 0.05),
                    ("IN_VEHICLE", 0.05),
                    ("ON_BICYCLE", 0.02),
                ],
            );
            Some((a, (45.0 + 20.0 * normal(rng)).clamp(0.0, 100.0) as i32))
        };

        // Environment.
        let env = if rng.random_bool(0.01) {
            None
        } else {
            if indoor && place.wifi_available && rng.random_bool(0.03) {
                place.connected = !place.connected;
            }
            let wifi = if indoor {
                place.connected
            } else {
                rng.random_bool(if mode == Mode::Vehicle { 0.03 } else { 0.07 })
            };
            let wifi_rssi = wifi.then(|| {
                if indoor {
                    (-60.0 + 9.0 * normal(rng)).round()
                } else {
                    (-74.0 + 7.0 * normal(rng)).round()
                }
            });
            let ap_mean = if indoor {
                place.ap_mean
            } else if mode == Mode::Vehicle {
                2.0 * spec.urbanity
            } else {
                4.5 * spec.urbanity
            };
            let visible = Poisson::new(ap_mean.max(0.05))
                .map(|p| p.sample(rng))
                .unwrap_or(0.0) as i32;
            if indoor && rng.random_bool(0.02) {
                place.charging = !place.charging;
            }
            let charging = if indoor {
                place.charging
            } else {
                outdoor_charging
            };
            Some(Env {
                wifi,
                wifi_rssi,
                visible,
                charging,
                screen: rng.random_bool(if mode == Mode::Vehicle && !indoor {
                    0.4
                } else {
                    0.3
                }),
            })
        };

        let flip = rng.random_bool(label_noise);
        emit(&Sample {
            sample_id: spec.first_sample_id + i as i64,
            device_id: spec.device_id,
            ts,
            cell_key,
            network_type,
            fix,
            radio,
            activity,
            env,
            indoor_true: indoor,
            indoor_label: indoor ^ flip,
        });
    }
}

fn new_place(rng: &mut ChaCha8Rng, spec: &DeviceSpec, hour: f64) -> Place {
    let night = is_night(hour);
    let wifi_available = rng.random_bool(if night { 0.8 } else { 0.6 });
    Place {
        wifi_available,
        connected: wifi_available && rng.random_bool(0.85),
        ap_mean: lognormal(rng, 7.0 * spec.urbanity, 0.7),
        penetration_db: (12.0 + 6.0 * normal(rng)).clamp(0.0, 30.0),
        floor: rng.random_range(0..6) as f64,
        gps_factor: lognormal(rng, 1.0, 0.5).clamp(0.3, 3.0),
        charging: rng.random_bool(if night { 0.55 } else { 0.15 }),
    }
}

fn mode_speed(rng: &mut ChaCha8Rng, mode: Mode) -> f64 {
    match mode {
        Mode::Walk => (1.4 + 0.3 * normal(rng)).max(0.3),
        Mode::Run => (3.0 + 0.5 * normal(rng)).max(1.0),
        Mode::Bike => (5.0 + 1.2 * normal(rng)).max(1.0),
        Mode::Vehicle => {
            if rng.random_bool(0.2) {
                0.0
            } else {
                lognormal(rng, 11.0, 0.5)
            }
        }
        Mode::Stand => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn simulation_is_deterministic_and_time_ordered() {
        let run = || {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let spec = device_spec(&mut rng, 1, 100, 500);
            let mut out = Vec::new();
            simulate_device(&spec, &mut rng, 1000, 0.015, |s| out.push(s.clone()));
            out
        };
        let a = run();
        assert_eq!(a, run());
        assert_eq!(a.len(), 500);
        assert!(a.windows(2).all(|w| w[0].ts < w[1].ts));
        assert_eq!(a[0].sample_id, 100);
        assert_eq!(a[499].sample_id, 599);
        // Both states occur over a day.
        assert!(a.iter().any(|s| s.indoor_true) && a.iter().any(|s| !s.indoor_true));
    }

    #[test]
    fn cells_are_a_function_of_the_key() {
        assert_eq!(cell_attrs(42), cell_attrs(42));
        let c = cell_attrs(7);
        assert!((0..504).contains(&c.pci));
        assert_eq!(c.mcc, 262);
    }

    #[test]
    fn local_hour_uses_cet() {
        // 2026-03-01T23:00:00Z is midnight in Berlin.
        assert_eq!(local_hour(1_772_406_000_000_000), 0.0);
    }
}
