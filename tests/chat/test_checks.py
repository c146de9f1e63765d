"""The moderation pipeline's configuration is checked at startup."""

from chat.checks import check_moderators


def test_the_shipped_moderators_pass(settings):
    assert check_moderators() == []


def test_an_unimportable_or_foreign_moderator_is_reported(settings):
    settings.CHAT_MODERATORS = ["chat.moderation.NoSuchModerator", "chat.models.Room"]

    assert [error.id for error in check_moderators()] == ["chat.E001", "chat.E002"]
