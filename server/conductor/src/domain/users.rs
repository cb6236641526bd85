//! Managing users: admins create, change, disable and delete them and reset passwords; every user
//! changes their own password. Whatever takes a user's access away (disable, delete, a new
//! password, a demotion) revokes its sessions in the same transaction.
//!
//! The last enabled admin cannot be disabled, demoted or deleted, so the platform never locks
//! itself out. Users seeded from configuration are applied again at each start (see `auth.rs`).

use aerekos_common::{ApiError, ApiResult};
use uuid::Uuid;

use super::{
    auth::{AuthService, AuthedUser, user_from_row, validate_username},
    passwords,
};
use crate::{
    model::{
        ChangePasswordRequest, CreateUserRequest, LoginResponse, Role, UpdateUserRequest, User,
    },
    store::{users, users::UserRow},
};

/// Bounds on a password set through the API (seeds and `AEREKOS_ADMIN_PASSWORD` are the operator's).
pub const MIN_PASSWORD_LEN: usize = 12;
pub const MAX_PASSWORD_LEN: usize = 1024;

fn check_new_password(password: &str) -> ApiResult<()> {
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&password.len()) {
        return Err(ApiError::bad_request(
            "weak_password",
            format!(
                "a password must be {MIN_PASSWORD_LEN}–{MAX_PASSWORD_LEN} bytes long (a passphrase of a few words is fine)"
            ),
        ));
    }
    Ok(())
}

impl AuthService {
    pub async fn list_users(&self) -> ApiResult<Vec<User>> {
        let rows = users::list(self.db()).await.map_err(ApiError::internal)?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn create_user(&self, req: &CreateUserRequest) -> ApiResult<User> {
        validate_username(&req.username)
            .map_err(|m| ApiError::bad_request("invalid_username", m))?;
        check_new_password(&req.password)?;
        if users::find_by_username(self.db(), &req.username)
            .await
            .map_err(ApiError::internal)?
            .is_some()
        {
            return Err(ApiError::conflict(
                "user_exists",
                format!("there is already a user {:?}", req.username),
            ));
        }
        let id = Uuid::new_v4().to_string();
        let hash = passwords::hash(req.password.clone()).await;
        users::insert(self.db(), &id, &req.username, &hash, req.role.as_str())
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => ApiError::conflict(
                    "user_exists",
                    format!("there is already a user {:?}", req.username),
                ),
                e => ApiError::internal(e),
            })?;
        tracing::info!(username = %req.username, role = req.role.as_str(), "user created");
        self.user(&id).await
    }

    /// Changes role and/or disabled. Disabling or demoting revokes the user's sessions (a token
    /// carries its role, so a demoted admin's old tokens must not keep it).
    pub async fn update_user(
        &self,
        caller: &AuthedUser,
        id: Uuid,
        req: &UpdateUserRequest,
    ) -> ApiResult<User> {
        let row = self.user_row(id).await?;
        let role = req
            .role
            .unwrap_or_else(|| Role::parse(&row.role).unwrap_or(Role::Viewer));
        let disabled = req.disabled.unwrap_or(row.disabled);
        let loses_admin = row.role == "admin" && !row.disabled && (role != Role::Admin || disabled);
        if loses_admin {
            self.keep_an_admin(&row, "disabled or made a viewer")
                .await?;
        }
        let takes_access =
            (disabled && !row.disabled) || (row.role == "admin" && role != Role::Admin);
        let revoked =
            users::update_access(self.db(), &row.id, role.as_str(), disabled, takes_access)
                .await
                .map_err(ApiError::internal)?;
        self.revoked(&revoked).await;
        tracing::info!(by = %caller.username, username = %row.username, role = role.as_str(), disabled, "user changed");
        self.user(&row.id).await
    }

    pub async fn delete_user(&self, caller: &AuthedUser, id: Uuid) -> ApiResult<()> {
        let row = self.user_row(id).await?;
        if row.role == "admin" && !row.disabled {
            self.keep_an_admin(&row, "deleted").await?;
        }
        let revoked = users::delete(self.db(), &row.id)
            .await
            .map_err(ApiError::internal)?;
        let revoked = revoked.ok_or_else(|| user_not_found(id))?;
        self.revoked(&revoked).await;
        tracing::info!(by = %caller.username, username = %row.username, "user deleted");
        Ok(())
    }

    /// An admin sets `id`'s password; the user's sessions are revoked.
    pub async fn reset_password(&self, id: Uuid, password: &str) -> ApiResult<User> {
        check_new_password(password)?;
        let row = self.user_row(id).await?;
        let hash = passwords::hash(password.to_owned()).await;
        let revoked = users::set_password(self.db(), &row.id, &hash)
            .await
            .map_err(ApiError::internal)?;
        self.revoked(&revoked).await;
        tracing::info!(username = %row.username, "password reset by an admin");
        self.user(&row.id).await
    }

    /// The caller changes their own password, knowing the current one. Every session of theirs,
    /// this one included, is revoked; the answer is a new session.
    pub async fn change_own_password(
        &self,
        caller: &AuthedUser,
        req: &ChangePasswordRequest,
    ) -> ApiResult<LoginResponse> {
        check_new_password(&req.new_password)?;
        let row = self.user_row(caller.id).await?;
        if !passwords::verify(row.password_hash.clone(), req.current_password.clone()).await {
            return Err(ApiError::forbidden(
                "wrong_password",
                "current_password is not this user's password",
            ));
        }
        let hash = passwords::hash(req.new_password.clone()).await;
        let revoked = users::set_password(self.db(), &row.id, &hash)
            .await
            .map_err(ApiError::internal)?;
        self.revoked(&revoked).await;
        tracing::info!(username = %row.username, "password changed");
        let user = self.user(&row.id).await?;
        self.session(user).await
    }

    async fn keep_an_admin(&self, row: &UserRow, change: &str) -> ApiResult<()> {
        let others = users::count_other_enabled_admins(self.db(), &row.id)
            .await
            .map_err(ApiError::internal)?;
        if others == 0 {
            return Err(ApiError::conflict(
                "last_admin",
                format!(
                    "{:?} is the only enabled admin and cannot be {change}; make another admin first",
                    row.username
                ),
            ));
        }
        Ok(())
    }

    async fn user_row(&self, id: Uuid) -> ApiResult<UserRow> {
        users::find_by_id(self.db(), &id.to_string())
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| user_not_found(id))
    }

    async fn user(&self, id: &str) -> ApiResult<User> {
        let row = users::find_by_id(self.db(), id)
            .await
            .map_err(ApiError::internal)?;
        user_from_row(&row.ok_or_else(|| ApiError::internal(format!("user {id} vanished")))?)
    }
}

fn user_not_found(id: Uuid) -> ApiError {
    ApiError::not_found("user_not_found", format!("there is no user with id {id}"))
}
