//! The status banners of the web interface, as a closed set of messages the server wrote.
//! After an action, the redirect back to the page names what happened by an id in the query
//! (`/admin/queue?done=anchor-approved`), never by text: anyone can send a link with any
//! query, and a banner that printed it would put their words ("Your account was compromised,
//! call ...") into anchorage's own page. Each id has one fixed sentence and belongs to one
//! page; an unknown id, or another page's, shows no banner. Details a sentence once carried
//! (a user, a bundle, a version) are left to the page itself, which shows them from the store.

/// One status banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    AnchorApproved,
    AnchorApprovedPublished,
    AnchorRejected,
    AnchorRetired,
    AnchorRetiredPublished,
    AnchorPromoted,
    AnchorPromotedPublished,
    BundlePublished,
    BundleUnchanged,
    SourceRefreshed,
    SourceRefreshedPublished,
    SourceRefreshFailed,
    UserCreated,
    UserDisabled,
    UserEnabled,
    PasswordReset,
    TokenRevoked,
    CertRevoked,
    AnchorSubmitted,
}

impl Notice {
    pub const ALL: [Notice; 19] = [
        Notice::AnchorApproved,
        Notice::AnchorApprovedPublished,
        Notice::AnchorRejected,
        Notice::AnchorRetired,
        Notice::AnchorRetiredPublished,
        Notice::AnchorPromoted,
        Notice::AnchorPromotedPublished,
        Notice::BundlePublished,
        Notice::BundleUnchanged,
        Notice::SourceRefreshed,
        Notice::SourceRefreshedPublished,
        Notice::SourceRefreshFailed,
        Notice::UserCreated,
        Notice::UserDisabled,
        Notice::UserEnabled,
        Notice::PasswordReset,
        Notice::TokenRevoked,
        Notice::CertRevoked,
        Notice::AnchorSubmitted,
    ];

    /// The id carried in `?done=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::AnchorApproved => "anchor-approved",
            Notice::AnchorApprovedPublished => "anchor-approved-published",
            Notice::AnchorRejected => "anchor-rejected",
            Notice::AnchorRetired => "anchor-retired",
            Notice::AnchorRetiredPublished => "anchor-retired-published",
            Notice::AnchorPromoted => "anchor-promoted",
            Notice::AnchorPromotedPublished => "anchor-promoted-published",
            Notice::BundlePublished => "bundle-published",
            Notice::BundleUnchanged => "bundle-unchanged",
            Notice::SourceRefreshed => "source-refreshed",
            Notice::SourceRefreshedPublished => "source-refreshed-published",
            Notice::SourceRefreshFailed => "source-refresh-failed",
            Notice::UserCreated => "user-created",
            Notice::UserDisabled => "user-disabled",
            Notice::UserEnabled => "user-enabled",
            Notice::PasswordReset => "password-reset",
            Notice::TokenRevoked => "token-revoked",
            Notice::CertRevoked => "cert-revoked",
            Notice::AnchorSubmitted => "anchor-submitted",
        }
    }

    /// The notice with this id, if there is one.
    pub fn parse(id: &str) -> Option<Notice> {
        Notice::ALL.into_iter().find(|n| n.as_str() == id)
    }

    /// The notice a page shows for its `?done=` value: only a known id of that page (its
    /// navigation entry, e.g. `/admin/queue`).
    pub fn from_query(done: Option<&str>, page: &str) -> Option<Notice> {
        done.and_then(Notice::parse).filter(|n| n.page() == page)
    }

    /// The navigation entry of the page that shows it.
    pub fn page(self) -> &'static str {
        match self {
            Notice::AnchorApproved
            | Notice::AnchorApprovedPublished
            | Notice::AnchorRejected
            | Notice::AnchorRetired
            | Notice::AnchorRetiredPublished
            | Notice::AnchorPromoted
            | Notice::AnchorPromotedPublished => "/admin/queue",
            Notice::BundlePublished
            | Notice::BundleUnchanged
            | Notice::SourceRefreshed
            | Notice::SourceRefreshedPublished
            | Notice::SourceRefreshFailed => "/admin/bundles",
            Notice::UserCreated
            | Notice::UserDisabled
            | Notice::UserEnabled
            | Notice::PasswordReset => "/admin/users",
            Notice::TokenRevoked => "/admin/tokens",
            Notice::CertRevoked => "/registrar/certs",
            Notice::AnchorSubmitted => "/member/anchors",
        }
    }

    /// The banner text: plain words, nothing HTML escaping would change (tests compare it
    /// with the page as served).
    pub fn sentence(self) -> &'static str {
        match self {
            Notice::AnchorApproved => {
                "The anchor was approved. The content of its bundle did not change, so no new version was published."
            }
            Notice::AnchorApprovedPublished => {
                "The anchor was approved, and a new version of its bundle was published."
            }
            Notice::AnchorRejected => "The anchor was rejected. The member sees your reason.",
            Notice::AnchorRetired => {
                "The anchor was retired. The content of its bundle did not change, so no new version was published."
            }
            Notice::AnchorRetiredPublished => {
                "The anchor was retired, and a new version of its bundle, without it, was published."
            }
            Notice::AnchorPromoted => {
                "The anchor was promoted. The content of the receiving bundle did not change, so no new version was published."
            }
            Notice::AnchorPromotedPublished => {
                "The anchor was promoted, and a new version of the receiving bundle was published."
            }
            Notice::BundlePublished => "A new version of the bundle was published.",
            Notice::BundleUnchanged => "The bundle is unchanged; nothing new was published.",
            Notice::SourceRefreshed => {
                "The source was fetched. Its anchors did not change, so nothing new was published."
            }
            Notice::SourceRefreshedPublished => {
                "The source was fetched, and the bundles built from it were published anew."
            }
            Notice::SourceRefreshFailed => {
                "The refresh failed. The row of the source below shows the status and the reason."
            }
            Notice::UserCreated => {
                "The account was created. Hand its one-time password, shown below, to its owner."
            }
            Notice::UserDisabled => "The account was disabled. It can no longer sign in.",
            Notice::UserEnabled => "The account was enabled. It can sign in again.",
            Notice::PasswordReset => {
                "A new password was set. It is shown below, this once: hand it to the owner of the account."
            }
            Notice::TokenRevoked => "The token was revoked. It no longer authenticates.",
            Notice::CertRevoked => {
                "The certificate was revoked. The next CRL will list it within seconds."
            }
            Notice::AnchorSubmitted => {
                "Your anchor was submitted for review. It is listed below with its number."
            }
        }
    }

    /// The page to send the browser to after the action: `PATH?done=ID`.
    pub fn redirect_to(self, path: &str) -> String {
        format!("{path}?done={}", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_text_is_no_notice() {
        for n in Notice::ALL {
            assert_eq!(Notice::parse(n.as_str()), Some(n), "ok/{}", n.as_str());
            assert_eq!(
                Notice::from_query(Some(n.as_str()), n.page()),
                Some(n),
                "ok/{}-on-its-page",
                n.as_str()
            );
            assert!(
                n.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{}: ids need no URL encoding",
                n.as_str()
            );
            assert!(
                !n.sentence().contains(['<', '>', '&', '"', '\'']),
                "{}: the sentence is served as written",
                n.as_str()
            );
        }
        let cases = [
            (
                "fail/script",
                Some("<script>alert(1)</script>"),
                "/admin/queue",
            ),
            (
                "fail/text",
                Some("Your account was compromised"),
                "/admin/users",
            ),
            ("fail/case", Some("Anchor-Approved"), "/admin/queue"),
            ("fail/other-page", Some("token-revoked"), "/admin/queue"),
            ("fail/empty", Some(""), "/admin/queue"),
            ("fail/absent", None, "/admin/queue"),
        ];
        for (name, done, page) in cases {
            assert_eq!(Notice::from_query(done, page), None, "{name}");
        }
    }
}
