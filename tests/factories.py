"""factory_boy factories shared by every test package."""

import factory
from django.contrib.auth import get_user_model

from accounts.constants import Role
from accounts.models import Membership, Tenant

DEFAULT_PASSWORD = "correct-horse-battery-staple"


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())


class UserFactory(factory.django.DjangoModelFactory):
    """A user with a membership: ``tenant`` and ``role`` set it, and
    ``UserFactory(tenant=None)`` makes a user with none (staff, for instance)."""

    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password(DEFAULT_PASSWORD)
    tenant = factory.SubFactory(TenantFactory)
    role = Role.MEMBER

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        tenant = kwargs.pop("tenant", None)
        role = kwargs.pop("role", Role.MEMBER)
        user = super()._create(model_class, *args, **kwargs)
        if tenant is not None:
            Membership.objects.create(user=user, tenant=tenant, role=role)
        return user
