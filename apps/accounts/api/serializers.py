from __future__ import annotations

from rest_framework import serializers

from apps.accounts.models import ApiKey, Invitation, User


class ApiKeyCreateInput(serializers.Serializer[dict[str, object]]):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.CharField(max_length=64),
        allow_empty=False,
        max_length=50,
        help_text="Permissions the key may use, e.g. audit:read; at most what your role grants.",
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class ApiKeyOutput(serializers.ModelSerializer[ApiKey]):
    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        ]
        read_only_fields = fields


class ApiKeyCreatedOutput(ApiKeyOutput):
    key = serializers.SerializerMethodField(
        help_text="The whole key. Shown this once; store it now."
    )

    class Meta(ApiKeyOutput.Meta):
        fields = [*ApiKeyOutput.Meta.fields, "key"]
        read_only_fields = fields

    def get_key(self, api_key: ApiKey) -> str:
        return str(self.context["secret"])


class MemberOutput(serializers.ModelSerializer[User]):
    signs_in_with = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = [
            "id",
            "email",
            "full_name",
            "role",
            "is_active",
            "last_login",
            "date_joined",
            "signs_in_with",
        ]
        read_only_fields = fields

    def get_signs_in_with(self, user: User) -> str:
        # socialaccount_set is prefetched by the selector: no query per member.
        return "sso" if user.socialaccount_set.all() else "password"  # type: ignore[attr-defined]


class MemberRoleInput(serializers.Serializer[dict[str, object]]):
    role = serializers.CharField(max_length=32)


class InvitationCreateInput(serializers.Serializer[dict[str, object]]):
    email = serializers.EmailField()
    role = serializers.CharField(max_length=32)


class InvitationOutput(serializers.ModelSerializer[Invitation]):
    invited_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="email", read_only=True
    )

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "status", "invited_by", "created_at", "accepted_at"]
        read_only_fields = fields
