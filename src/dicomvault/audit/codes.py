"""The audit vocabulary of the DICOM Standard, as data.

Sources (DICOM PS3.16, coding scheme DCM, the same codes IHE ATNA and FHIR AuditEvent use):

- ``EventID``: CID 400 "Audit Event ID" (OID 1.2.840.10008.6.1.903); the event
  identification of the messages of PS3.15 A.5.3 (e.g. "Query").
- ``EventTypeCode``: CID 401 "Audit Event Type Code" (OID 1.2.840.10008.6.1.904); the subtype
  that some events carry (Login / Logout for User Authentication, the kind of Security Alert...).
- ``EventActionCode``: PS3.15 A.5.1, EventActionCode (from RFC 3881 / the ATNA schema).
- ``EventOutcome``: PS3.15 A.5.1, EventOutcomeIndicator.

``EventKind`` and the constants below it are dicomvault's choice of which code each operation
records; the reasoning is in each comment, so callers (api/, dimse/, cli) need not decide it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

DCM = "DCM"
DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"


class EventID(StrEnum):
    """PS3.16 CID 400 Audit Event ID."""

    APPLICATION_ACTIVITY = "110100"
    AUDIT_LOG_USED = "110101"
    BEGIN_TRANSFERRING_INSTANCES = "110102"
    INSTANCES_ACCESSED = "110103"
    INSTANCES_TRANSFERRED = "110104"
    STUDY_DELETED = "110105"
    EXPORT = "110106"
    IMPORT = "110107"
    NETWORK_ENTRY = "110108"
    ORDER_RECORD = "110109"
    PATIENT_RECORD = "110110"
    PROCEDURE_RECORD = "110111"
    QUERY = "110112"
    SECURITY_ALERT = "110113"
    USER_AUTHENTICATION = "110114"


EVENT_ID_MEANING: dict[str, str] = {
    "110100": "Application Activity",
    "110101": "Audit Log Used",
    "110102": "Begin Transferring DICOM Instances",
    "110103": "DICOM Instances Accessed",
    "110104": "DICOM Instances Transferred",
    "110105": "DICOM Study Deleted",
    "110106": "Export",
    "110107": "Import",
    "110108": "Network Entry",
    "110109": "Order Record",
    "110110": "Patient Record",
    "110111": "Procedure Record",
    "110112": "Query",
    "110113": "Security Alert",
    "110114": "User Authentication",
}


class EventTypeCode(StrEnum):
    """PS3.16 CID 401 Audit Event Type Code (the members dicomvault records)."""

    APPLICATION_START = "110120"
    APPLICATION_STOP = "110121"
    LOGIN = "110122"
    LOGOUT = "110123"
    NODE_AUTHENTICATION = "110126"
    SECURITY_CONFIGURATION = "110129"
    SOFTWARE_CONFIGURATION = "110131"
    USE_OF_RESTRICTED_FUNCTION = "110132"
    OBJECT_SECURITY_ATTRIBUTES_CHANGED = "110135"
    SECURITY_ROLES_CHANGED = "110136"
    USER_SECURITY_ATTRIBUTES_CHANGED = "110137"
    AUTHENTICATION_DECISION = "110143"
    AUTHORIZATION_DECISION = "110144"
    SESSION_START = "110145"
    SESSION_STOP = "110146"


EVENT_TYPE_MEANING: dict[str, str] = {
    "110120": "Application Start",
    "110121": "Application Stop",
    "110122": "Login",
    "110123": "Logout",
    "110126": "Node Authentication",
    "110129": "Security Configuration",
    "110131": "Software Configuration",
    "110132": "Use of Restricted Function",
    "110135": "Object Security Attributes Changed",
    "110136": "Security Roles Changed",
    "110137": "User Security Attributes Changed",
    "110143": "Authentication Decision",
    "110144": "Authorization Decision",
    "110145": "Session start",
    "110146": "Session stop",
}


class EventActionCode(StrEnum):
    """PS3.15 A.5.1 EventActionCode: what was done to the participant objects."""

    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


EVENT_ACTION_MEANING: dict[str, str] = {
    "C": "Create",
    "R": "Read",
    "U": "Update",
    "D": "Delete",
    "E": "Execute",
}


class EventOutcome(IntEnum):
    """PS3.15 A.5.1 EventOutcomeIndicator.

    For a Security Alert (PS3.15 A.5.3) a minor or serious failure means the attempt was mitigated
    (e.g. an authorisation denial); a major failure means security may have been compromised.
    """

    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8
    MAJOR_FAILURE = 12


@dataclass(frozen=True)
class EventKind:
    """The codes one application operation records: event ID, action, optional subtype."""

    event_id: EventID
    action: EventActionCode
    event_type: EventTypeCode | None = None


_E = EventActionCode

# QIDO-RS, C-FIND, worklist search. PS3.15 A.5.3: Query uses action E.
QUERY = EventKind(EventID.QUERY, _E.EXECUTE)
# WADO-RS (instances, frames, rendered...), C-MOVE / C-GET sending. PS3.15 A.5.3: read = R.
RETRIEVE = EventKind(EventID.INSTANCES_TRANSFERRED, _E.READ)
# STOW-RS, C-STORE, uploads received over the network. PS3.15 A.5.3: the receiver records
# DICOM Instances Transferred with C (U when an existing instance is replaced).
STORE = EventKind(EventID.INSTANCES_TRANSFERRED, _E.CREATE)
STORE_REPLACE = EventKind(EventID.INSTANCES_TRANSFERRED, _E.UPDATE)
# Folder / media import (`dicomvault import`). PS3.15 A.5.3: Import is for data brought in
# from outside the network (media, files), not for network transfers.
IMPORT = EventKind(EventID.IMPORT, _E.CREATE)
# Data leaving the archive's control other than by DICOM retrieve (de-identified research copies,
# FHIR/JSON exports of the audit trail itself use AUDIT_LOG_USED). PS3.15 A.5.3 Export.
EXPORT = EventKind(EventID.EXPORT, _E.READ)
# Whole-study deletion. PS3.15 A.5.3 DICOM Study Deleted, action D.
STUDY_DELETE = EventKind(EventID.STUDY_DELETED, _E.DELETE)
# Deleting part of a study (series / instances): PS3.15 A.5.3 DICOM Instances Accessed with D.
INSTANCES_DELETE = EventKind(EventID.INSTANCES_ACCESSED, _E.DELETE)
# Changing stored attributes (fixing a wrong upload): DICOM Instances Accessed, U.
INSTANCES_UPDATE = EventKind(EventID.INSTANCES_ACCESSED, _E.UPDATE)
# Patient-level corrections (merge, patient ID change). PS3.15 A.5.3 Patient Record.
PATIENT_RECORD_UPDATE = EventKind(EventID.PATIENT_RECORD, _E.UPDATE)
# Password / client-credential / OIDC logins, token refresh, logout. PS3.15 A.5.3 User
# Authentication, subtype Login / Logout; a failed login is outcome MINOR_FAILURE.
LOGIN = EventKind(EventID.USER_AUTHENTICATION, _E.EXECUTE, EventTypeCode.LOGIN)
LOGOUT = EventKind(EventID.USER_AUTHENTICATION, _E.EXECUTE, EventTypeCode.LOGOUT)
# A request the principal's roles, scopes or tenants do not allow. PS3.15 A.5.3 Security
# Alert, subtype "Use of Restricted Function"; outcome MINOR_FAILURE (refused = mitigated).
AUTHORIZATION_DENIED = EventKind(
    EventID.SECURITY_ALERT, _E.EXECUTE, EventTypeCode.USE_OF_RESTRICTED_FUNCTION
)
# Tampered / forged tokens, refresh-token reuse: Security Alert, subtype "Authentication
# Decision" (CID 401, 110143); outcome SERIOUS_FAILURE (detected and refused).
AUTHENTICATION_ALERT = EventKind(
    EventID.SECURITY_ALERT, _E.EXECUTE, EventTypeCode.AUTHENTICATION_DECISION
)
# Admin changes, PS3.15 A.5.3 Security Alert subtypes: a user's or client's roles, tenants,
# password or secret (C/U/D as the change was) ...
USER_SECURITY_CHANGE = EventKind(
    EventID.SECURITY_ALERT, _E.UPDATE, EventTypeCode.USER_SECURITY_ATTRIBUTES_CHANGED
)
# ... the role → permission grants ...
SECURITY_ROLES_CHANGE = EventKind(
    EventID.SECURITY_ALERT, _E.UPDATE, EventTypeCode.SECURITY_ROLES_CHANGED
)
# ... tenants, rate plans, IP allowlists and other security settings.
SECURITY_CONFIGURATION_CHANGE = EventKind(
    EventID.SECURITY_ALERT, _E.UPDATE, EventTypeCode.SECURITY_CONFIGURATION
)
# Reading, searching, exporting or verifying the audit trail. PS3.15 A.5.3 Audit Log Used.
AUDIT_LOG_USED = EventKind(EventID.AUDIT_LOG_USED, _E.READ)
# Process start / stop. PS3.15 A.5.3 Application Activity.
APPLICATION_START = EventKind(
    EventID.APPLICATION_ACTIVITY, _E.EXECUTE, EventTypeCode.APPLICATION_START
)
APPLICATION_STOP = EventKind(
    EventID.APPLICATION_ACTIVITY, _E.EXECUTE, EventTypeCode.APPLICATION_STOP
)
