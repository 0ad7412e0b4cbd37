//! Incidents: opened, acknowledged, mitigated and resolved, some slowly; most sev1s
//! and some sev2s get a postmortem, some late, some never. Live, some are recorded
//! late (see [`Generator::open_incident`]).

use serde_json::json;

use super::Action;
use crate::generator::Generator;
use crate::world::{INCIDENT_TITLES, ON_CALL, SERVICES};

pub(crate) enum IncidentStep {
    Acknowledge,
    Mitigate,
    Resolve,
    Postmortem,
}

pub(crate) struct Incident {
    id: String,
    severity: u8,
    responder: &'static str,
    /// Live only: an incident recorded a week after it happened (a ticket system
    /// synced late) has its events this much before the time they are recorded,
    /// so its obligations are already overdue when they reach the views.
    earlier_ms: i64,
}

/// How much earlier than recorded a week-late incident happened (live only).
const WEEK_LATE_MS: i64 = 6 * 24 * 3_600_000;

impl Generator {
    pub(super) fn open_incident(&mut self) {
        let id = self.next_id("INC", 100);
        let mut severity = match self.int(0, 100) {
            0..8 => 1,
            8..24 => 2,
            24..60 => 3,
            _ => 4,
        };
        // Live, durations are compressed to seconds while event time is the wall
        // clock, so nothing would ever be slow or overdue by event time. Some
        // incidents are therefore reported late: opened 20-90 minutes before anyone
        // records it (a slow acknowledgement), or a whole sev1 recorded a week late
        // (its postmortem overdue). The first two live incidents are one of each, so
        // the first minute shows both.
        let (mut opened_earlier, mut earlier_ms) = (0, 0);
        if self.live {
            self.live_incidents += 1;
            let roll = match self.live_incidents {
                1 => 25,
                2 => 0,
                _ => self.int(0, 100),
            };
            match roll {
                0..20 => opened_earlier = self.int(20, 90) * 60_000,
                20..30 => {
                    severity = 1;
                    earlier_ms = WEEK_LATE_MS;
                }
                _ => {}
            }
        }
        let (service, title) = (self.pick(SERVICES), self.pick(INCIDENT_TITLES));
        self.emit_earlier(
            format!("incident/{id}"),
            "incident.opened",
            &id,
            json!({ "incident_id": id, "severity": format!("sev{severity}"), "service": service,
                    "title": format!("{service}: {title}") }),
            earlier_ms + opened_earlier,
        );
        let slow = if severity == 4 { 0.4 } else { 0.2 };
        let at = if self.chance(slow) {
            self.after(0.3, 1.5)
        } else {
            self.after(0.02, 0.15)
        };
        let incident = Box::new(Incident {
            id,
            severity,
            responder: self.pick(ON_CALL),
            earlier_ms,
        });
        self.schedule(at, Action::Incident(IncidentStep::Acknowledge, incident));
    }

    pub(super) fn incident(&mut self, step: IncidentStep, incident: Box<Incident>) {
        let id = incident.id.clone();
        let stream = format!("incident/{id}");
        let by = incident.responder;
        let earlier = incident.earlier_ms;
        match step {
            IncidentStep::Acknowledge => {
                self.emit_earlier(
                    stream,
                    "incident.acknowledged",
                    &id,
                    json!({ "incident_id": id, "by": by }),
                    earlier,
                );
                let at = if incident.severity == 1 {
                    self.after(0.1, 1.5)
                } else {
                    self.after(0.2, 3.0)
                };
                self.schedule(at, Action::Incident(IncidentStep::Mitigate, incident));
            }
            IncidentStep::Mitigate => {
                self.emit_earlier(
                    stream,
                    "incident.mitigated",
                    &id,
                    json!({ "incident_id": id, "by": by }),
                    earlier,
                );
                let at = self.after(0.2, 8.0);
                self.schedule(at, Action::Incident(IncidentStep::Resolve, incident));
            }
            IncidentStep::Resolve => {
                let severity = format!("sev{}", incident.severity);
                self.emit_earlier(
                    stream,
                    "incident.resolved",
                    &id,
                    json!({ "incident_id": id, "by": by, "severity": severity }),
                    earlier,
                );
                // Postmortems: most sev1s get one within days, some late, some never.
                // One recorded a week late gets it now (late), or never.
                let roll = self.rng_range(0.0, 1.0);
                if earlier > 0 {
                    if roll < 0.5 {
                        let at = self.after(0.5, 2.0);
                        let incident = Box::new(Incident {
                            earlier_ms: 0,
                            ..*incident
                        });
                        self.schedule(at, Action::Incident(IncidentStep::Postmortem, incident));
                    }
                    return;
                }
                let at = match incident.severity {
                    1 if roll < 0.6 => Some(self.after(24.0, 100.0)),
                    1 if roll < 0.75 => Some(self.after(130.0, 170.0)),
                    2 if roll < 0.5 => Some(self.after(24.0, 96.0)),
                    _ => None,
                };
                if let Some(at) = at {
                    self.schedule(at, Action::Incident(IncidentStep::Postmortem, incident));
                }
            }
            IncidentStep::Postmortem => {
                self.emit(
                    stream,
                    "postmortem.published",
                    &id,
                    json!({ "incident_id": id, "author": by,
                            "url": format!("https://wiki.example.com/postmortems/{id}") }),
                );
            }
        }
    }
}
